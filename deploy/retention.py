"""Keep a year of history from becoming ten: move old `forecast` and `monitor` runs to `deleted`, then
collect them with `mlflow gc`.

    export MLFLOW_TRACKING_URI=https://mlflow.example:5000            # the team server, as an admin
    export MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=...
    python -m deploy.retention --older-than-days 400 --dry-run         # what it would delete
    python -m deploy.retention --older-than-days 400                   # delete (recoverable until gc)
    PGPASSWORD=... mlflow gc --backend-store-uri postgresql+psycopg://mlflow@db:5432/mlflow

A run is deleted when it is named `forecast` or `monitor`, has no parent run, has ended, started more
than `--older-than-days` days ago, and is none of the runs the Model Registry's versions stand on: each
version's source run (the train run), the runs its lineage tags name (`<step>_run_id`), the pipeline run
that trained it (the train run's mlflow.parentRunId) and that run's steps (its `run_id_<step>` tags).
Nothing else is touched: pipeline runs, their steps and the registry stay. Deleting goes through MLflow's
client (`delete_run`, as the UI does), a page of runs at a time, `--parallel` requests at once.

`mlflow gc` then removes the deleted runs' rows (runs, tags, params, metrics, latest_metrics, inputs) and
their artifacts; with MLFLOW_TRACKING_URI set to the server it deletes the proxied artifacts through it
(`mlflow-artifacts:/` URIs). `--older-than 30d` there keeps a month to undo (`mlflow runs restore`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import time
from collections.abc import Iterable, Iterator

from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from flow_steps.config.declarations import WINDOW_FORECASTS
from flow_steps.config.errors import one_line
from flow_steps.config.names import FORECAST_ENTRY_POINT, MONITOR_ENTRY_POINT, TAG_CHILD_RUN_PREFIX
from flow_steps.runtime.tracking import pages

logger = logging.getLogger("deploy.retention")
RETIRED_NAMES = (FORECAST_ENTRY_POINT, MONITOR_ENTRY_POINT)
LINEAGE_TAG_SUFFIX = "_run_id"  # a version's download_raw_data_run_id, transform_data_run_id, train_run_id
PAGE = 1000
# monitor scores the newest window_forecasts forecast runs of a ticker: one a session, 5 sessions a week.
MONITOR_WINDOW_DAYS = WINDOW_FORECASTS.default * 7 / 5
DAY_MS = 86_400_000


def retired(run: Run, cutoff_ms: int, protected: set[str]) -> bool:
    """Whether retention deletes `run`: an ended top-level forecast or monitor run that started before
    `cutoff_ms` and that no registered version stands on."""
    return (
        run.info.run_name in RETIRED_NAMES
        and MLFLOW_PARENT_RUN_ID not in run.data.tags
        and run.info.status != "RUNNING"
        and run.info.start_time is not None
        and run.info.start_time < cutoff_ms
        and run.info.run_id not in protected
    )


def lineage_of(version_run_id: str, version_tags: dict[str, str], run_tags) -> set[str]:
    """The runs a registered version stands on: its source run, the runs its tags name, the source run's
    parent and that parent's steps. `run_tags(run_id)` reads a run's tags ({} when it is gone)."""
    found = {version_run_id}
    found |= {value for key, value in version_tags.items() if key.endswith(LINEAGE_TAG_SUFFIX) and value}
    if parent := run_tags(version_run_id).get(MLFLOW_PARENT_RUN_ID):
        found.add(parent)
        found |= {value for key, value in run_tags(parent).items() if key.startswith(TAG_CHILD_RUN_PREFIX)}
    return found


def protected_runs(client: MlflowClient) -> set[str]:
    """Every run a version of any registered model stands on (lineage_of)."""

    def run_tags(run_id: str) -> dict[str, str]:
        try:
            return client.get_run(run_id).data.tags
        except Exception:  # a run deleted for good: nothing more to protect through it
            return {}

    found: set[str] = set()
    for model in pages(lambda token: client.search_registered_models(max_results=PAGE, page_token=token)):
        name = model.name.replace("'", "\\'")
        versions = pages(
            lambda token, name=name: client.search_model_versions(
                f"name = '{name}'", max_results=PAGE, page_token=token
            )
        )
        for version in versions:
            if version.run_id:
                found |= lineage_of(version.run_id, dict(version.tags), run_tags)
    return found


def candidates(client: MlflowClient, experiment_ids: Iterable[str], cutoff_ms: int) -> Iterator[Run]:
    """Active runs named forecast or monitor that started before the cutoff, page by page."""
    for name in RETIRED_NAMES:
        query = f"attributes.run_name = '{name}' and attributes.start_time < {cutoff_ms}"
        yield from pages(
            lambda token, query=query: client.search_runs(
                list(experiment_ids), query, ViewType.ACTIVE_ONLY, PAGE, page_token=token
            )
        )


def retire(client: MlflowClient, older_than_days: float, dry_run: bool, parallel: int = 4) -> list[str]:
    """Delete the retired runs of every active experiment (see `retired`); their ids."""
    if older_than_days < MONITOR_WINDOW_DAYS:
        logger.warning(
            "monitor scores the newest %d forecast runs (about %.0f days of sessions): deleting those older "
            "than %g days shortens its window",
            WINDOW_FORECASTS.default,
            MONITOR_WINDOW_DAYS,
            older_than_days,
        )
    cutoff = int(time.time() * 1000 - older_than_days * DAY_MS)
    protected = protected_runs(client)
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    chosen = [
        run.info.run_id for run in candidates(client, experiments, cutoff) if retired(run, cutoff, protected)
    ]
    logger.info("%d runs to delete (%d protected by the registry's lineage)", len(chosen), len(protected))
    if dry_run:
        return chosen
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        for done, _ in enumerate(pool.map(client.delete_run, chosen), start=1):
            if done % PAGE == 0:
                logger.info("%d of %d deleted", done, len(chosen))
    logger.info("Deleted %d runs; `mlflow gc` collects them (docs/team-server.md)", len(chosen))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--older-than-days", type=float, required=True, help="keep runs younger than this")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    parser.add_argument("--parallel", type=int, default=4, help="delete requests at once")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if arguments.older_than_days < 0 or arguments.parallel < 1:
        raise SystemExit("retention: --older-than-days must be at least 0 and --parallel at least 1")
    try:
        chosen = retire(MlflowClient(), arguments.older_than_days, arguments.dry_run, arguments.parallel)
    except Exception as error:  # the server down, a login refused: one line, exit 1
        raise SystemExit(f"retention: {one_line(error)}") from None
    if arguments.dry_run:
        print("\n".join(chosen))


if __name__ == "__main__":
    main()
