"""Tag the forecast runs logged before `monitor` found a ticker's forecasts by a tag of their own: each gets
a `forecast_ticker.<TICKER>` tag for every ticker of its `forecast_tickers` list, so that monitor keeps
scoring them. Once, after upgrading; idempotent (a run that has its tags is left alone); through MLflow's
client, so any tracking store (a team server, a sqlite file, ./mlruns).

    export MLFLOW_TRACKING_URI=https://mlflow.example:5000       # as a user who may edit the runs
    python -m deploy.ticker_tags --dry-run                        # the runs it would tag
    python -m deploy.ticker_tags

Why: monitor's old search, `tags.forecast_tickers LIKE '%,MSFT,%'`, reads every forecast run's list (398 ms
at 900,000 runs, docs/performance.md "History"); `tags.`forecast_ticker.MSFT` = 'true'` is a look-up in
MLflow's own index of tags by key.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator

from mlflow.entities import RunTag, ViewType
from mlflow.tracking import MlflowClient

from flow_steps.config.errors import one_line
from flow_steps.config.names import (
    FORECAST_TICKER_TAG_VALUE,
    TAG_FORECAST_TICKERS,
    forecast_ticker_tag,
)
from flow_steps.runtime.tracking import pages

logger = logging.getLogger("deploy.ticker_tags")
PAGE = 1000


def missing_ticker_tags(tags: dict[str, str]) -> dict[str, str]:
    """The per-ticker tags a run lacks for the tickers of its `forecast_tickers` list (none without one)."""
    listed = [ticker for ticker in tags.get(TAG_FORECAST_TICKERS, "").split(",") if ticker]
    wanted = {forecast_ticker_tag(ticker): FORECAST_TICKER_TAG_VALUE for ticker in listed}
    return {key: value for key, value in wanted.items() if tags.get(key) != value}


def untagged_forecast_runs(client: MlflowClient) -> Iterator[tuple[str, dict[str, str]]]:
    """(run id, the tags it lacks) of every active forecast run that lacks some, page by page."""
    experiments = pages(lambda token: client.search_experiments(max_results=PAGE, page_token=token))
    experiment_ids = [experiment.experiment_id for experiment in experiments]
    query = f"tags.{TAG_FORECAST_TICKERS} LIKE ',%'"
    runs = pages(
        lambda token: client.search_runs(experiment_ids, query, ViewType.ACTIVE_ONLY, PAGE, page_token=token)
    )
    for run in runs:
        if missing := missing_ticker_tags(run.data.tags):
            yield run.info.run_id, missing


def tag_forecast_runs(client: MlflowClient, dry_run: bool = False) -> list[str]:
    """Give every forecast run the per-ticker tags it lacks (none with `dry_run`); the runs' ids."""
    tagged = []
    for run_id, missing in untagged_forecast_runs(client):
        if not dry_run:
            client.log_batch(run_id, tags=[RunTag(key, value) for key, value in missing.items()])
        tagged.append(run_id)
        if len(tagged) % PAGE == 0:
            logger.info("%d forecast runs %s", len(tagged), "to tag" if dry_run else "tagged")
    logger.info("%d forecast runs %s", len(tagged), "to tag" if dry_run else "tagged")
    return tagged


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", help="list the runs it would tag, tag nothing")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        tagged = tag_forecast_runs(MlflowClient(), arguments.dry_run)
    except Exception as error:  # the server down, a login refused: one line, exit 1
        raise SystemExit(f"ticker_tags: {one_line(error)}") from None
    if arguments.dry_run:
        print("\n".join(tagged))


if __name__ == "__main__":
    main()
