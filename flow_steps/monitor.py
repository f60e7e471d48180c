"""Monitor: score a ticker's logged forecasts against the closes that then happened.

    python -m flow_steps.monitor --company-abbreviation MSFT --data-source sample

Finds the newest `window_forecasts` forecast runs of the ticker (in this experiment) whose dates now
have a real close in `data_source`, scores them per model version (RMSE against the naive forecast over
the same days, interval hits), and logs a `monitor` run. When the champion's realized RMSE / naive is
above `max_rmse_vs_naive`, or its 80% coverage is outside [`min_coverage_80`, `max_coverage_80`], the
run is tagged `degraded=true`, one line says why, and with `fail_on_degradation` the command exits 2.
"""

from __future__ import annotations

import logging
import sys

import click
import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flow_steps.config.entry_points import options
from flow_steps.config.names import (
    CHAMPION_ALIAS,
    DATE_COLUMN,
    FORECAST_TABLE_PATH,
    MODEL_VERSION_COLUMN,
    MONITOR_ENTRY_POINT,
    TAG_CHAMPION_VERSION,
    TAG_FORECAST_TICKERS,
    TAG_MODEL_URI,
    TAG_MODEL_VERSION,
    registered_model_name,
)
from flow_steps.config.values import PriceChecks
from flow_steps.data.ingest import load_prices
from flow_steps.data.sources import fetch_raw_prices, refuse_embedded_secrets
from flow_steps.data.tickers import normalize_ticker
from flow_steps.deployment.degradation import (
    RUN_COLUMN,
    Thresholds,
    by_version,
    degradation,
    realized_metrics,
    scored_days,
)
from flow_steps.deployment.versions import alias_version_number
from flow_steps.runtime.lifecycle import check_option, run_step

logger = logging.getLogger(__name__)

BY_VERSION_PATH = "monitor/by_version.csv"
SCORED_DAYS_PATH = "monitor/scored_days.csv"
TAG_DEGRADED = "degraded"
TAG_DEGRADATION = "degradation"
DEGRADED_EXIT_CODE = 2
SEARCH_LIMIT = 1000  # forecast runs looked at, newest first


def forecast_runs(client: MlflowClient, experiment_id: str, ticker: str) -> list:
    """The ticker's finished forecast runs in the experiment, newest first."""
    return client.search_runs(
        [experiment_id],
        f"tags.{TAG_FORECAST_TICKERS} LIKE '%,{ticker},%' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=SEARCH_LIMIT,
    )


def logged_forecasts(run, ticker: str) -> pd.DataFrame:
    """One forecast run's rows for `ticker`, labelled with the run and the model version that answered."""
    table = pd.read_csv(
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=FORECAST_TABLE_PATH)
    )
    if "ticker" in table:
        table = table[table["ticker"] == ticker]
    version = run.data.tags.get(TAG_MODEL_VERSION) or run.data.tags.get(TAG_MODEL_URI, "unknown")
    if MODEL_VERSION_COLUMN in table:
        table[MODEL_VERSION_COLUMN] = table[MODEL_VERSION_COLUMN].fillna(version).astype(str)
        table[MODEL_VERSION_COLUMN] = table[MODEL_VERSION_COLUMN].str.removesuffix(".0")
    else:
        table[MODEL_VERSION_COLUMN] = str(version)
    return table.assign(**{RUN_COLUMN: run.info.run_id})


def newest_scored(runs: list, ticker: str, prices: pd.DataFrame, window: int) -> pd.DataFrame:
    """The scored days of the newest `window` forecast runs that have any (see monitoring.scored_days)."""
    scored = []
    for run in runs:
        try:
            days = scored_days(logged_forecasts(run, ticker), prices)
        except (MlflowException, OSError, KeyError) as error:
            logger.warning("Skipping forecast run %s: %s", run.info.run_id, error)
            continue
        if len(days):
            scored.append(days)
        if len(scored) == window:
            break
    return pd.concat(scored, ignore_index=True) if scored else pd.DataFrame()


def monitor(ticker: str, prices: pd.DataFrame, window: int, thresholds: Thresholds) -> str | None:
    """Score, log and report; the champion's degradation, or None."""
    client = MlflowClient()
    run = mlflow.active_run()
    scored = newest_scored(forecast_runs(client, run.info.experiment_id, ticker), ticker, prices, window)
    champion = alias_version_number(client, registered_model_name(ticker), CHAMPION_ALIAS)
    mlflow.set_tag(TAG_CHAMPION_VERSION, champion)
    if scored.empty:
        logger.info("No logged forecast of %s has a date with a real close yet: nothing to score", ticker)
        mlflow.log_metrics({"forecasts_scored": 0, "days_scored": 0})
        mlflow.set_tag(TAG_DEGRADED, "false")
        return None
    table = by_version(scored)
    mlflow.log_text(table.to_csv(index=False), BY_VERSION_PATH)
    mlflow.log_text(scored.to_csv(index=False, date_format="%Y-%m-%d"), SCORED_DAYS_PATH)
    mlflow.log_metrics({"forecasts_scored": scored[RUN_COLUMN].nunique(), "days_scored": len(scored)})
    click.echo(f"Realized forecasts of {ticker} through {prices[DATE_COLUMN].iloc[-1]:%Y-%m-%d}, by version:")
    click.echo(table.to_string(index=False, float_format=lambda value: f"{value:.4f}"))
    champion_days = scored[scored[MODEL_VERSION_COLUMN] == champion]
    if champion_days.empty:
        logger.info("The champion (version %s) has no scored forecast yet", champion or "none")
        mlflow.set_tag(TAG_DEGRADED, "false")
        return None
    metrics = realized_metrics(champion_days)
    mlflow.log_metrics({f"realized_{name}": value for name, value in metrics.items()})
    reason = degradation(metrics, thresholds)
    mlflow.set_tag(TAG_DEGRADED, str(reason is not None).lower())
    if reason:
        mlflow.set_tag(TAG_DEGRADATION, reason)
    return reason


@click.command(
    help="Score the ticker's logged forecasts whose dates now have a real close in DATA_SOURCE (per model "
    "version: RMSE against the naive forecast, interval coverage) and flag a degraded champion "
    f"(tag {TAG_DEGRADED}=true; exit {DEGRADED_EXIT_CODE} with --fail-on-degradation true)."
)
@options(MONITOR_ENTRY_POINT)
def cli(
    company_abbreviation: str,
    data_source: str,
    quandl_database: str,
    window_forecasts: int,
    max_rmse_vs_naive: float,
    min_coverage_80: float,
    max_coverage_80: float,
    fail_on_degradation: bool,
    **checks: str | int | float,
) -> None:
    check_option(refuse_embedded_secrets, data_source, "--data-source")
    if min_coverage_80 > max_coverage_80:
        raise click.BadParameter(
            f"{min_coverage_80} is above --max-coverage-80 {max_coverage_80}",
            param_hint="'--min-coverage-80'",
        )
    ticker = normalize_ticker(company_abbreviation)
    thresholds = Thresholds(max_rmse_vs_naive, min_coverage_80, max_coverage_80)
    outcome: list[str | None] = []

    def work() -> None:
        raw = fetch_raw_prices(data_source, ticker, quandl_database)
        prices = load_prices(raw.content, raw.resolved_source, checks=PriceChecks(**checks)).prices
        outcome.append(monitor(ticker, prices, window_forecasts, thresholds))

    params = {
        "company_abbreviation": company_abbreviation,
        "data_source": data_source,
        "quandl_database": quandl_database,
        "window_forecasts": window_forecasts,
        "max_rmse_vs_naive": max_rmse_vs_naive,
        "min_coverage_80": min_coverage_80,
        "max_coverage_80": max_coverage_80,
        "fail_on_degradation": str(fail_on_degradation).lower(),
        **checks,
    }
    run_step(MONITOR_ENTRY_POINT, params, work)
    if outcome and outcome[0]:
        logger.warning("The champion of %s is degraded: %s", ticker, outcome[0])
        if fail_on_degradation:
            sys.exit(DEGRADED_EXIT_CODE)
    elif outcome:
        logger.info("The champion of %s is within its thresholds", ticker)


if __name__ == "__main__":
    cli()
