"""Realized forecasts: a ticker's logged forecasts found and scored against the closes that then happened.

Finds the newest forecast runs of the ticker (in the active run's experiment) whose dates now have a
real close, scores them per model version (deployment/degradation.py) and logs the result on the active
run; the tests on the champion's one-day-ahead forecasts decide whether it is degraded.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flow_steps.config.names import (
    CHAMPION_ALIAS,
    DATE_COLUMN,
    FORECAST_TABLE_PATH,
    FORECAST_TICKER_TAG_VALUE,
    MODEL_VERSION_COLUMN,
    MONITOR_BY_VERSION_PATH,
    MONITOR_SCORED_DAYS_PATH,
    TAG_CHAMPION_VERSION,
    TAG_DEGRADATION,
    TAG_DEGRADED,
    TAG_MODEL_URI,
    TAG_MODEL_VERSION,
    TAG_TOO_FEW_DAYS,
    TICKER_COLUMN,
    forecast_ticker_tag,
    registered_model_name,
)
from flow_steps.config.values import PriceChecks
from flow_steps.data.ingest import load_prices
from flow_steps.data.sources import fetch_raw_prices
from flow_steps.deployment.degradation import (
    RUN_COLUMN,
    by_version,
    judge,
    realized_metrics,
    scored_days,
)
from flow_steps.deployment.versions import alias_version_number
from flow_steps.runtime.tracking import pages

logger = logging.getLogger(__name__)

SEARCH_LIMIT = 1000  # forecast runs looked at, newest first
# Forecast runs a search answers at once. The server's time grows with the runs it answers (about 1.6 ms
# each): a year of a ticker's forecasts in one answer took 400 ms (docs/performance.md, "History").
FORECAST_PAGE = 25


def forecast_runs(client: MlflowClient, experiment_id: str, ticker: str) -> Iterator[Run]:
    """The ticker's finished forecast runs in the experiment, newest first (at most SEARCH_LIMIT), a page
    read when the one before is used up."""
    tagged = f"tags.`{forecast_ticker_tag(ticker)}` = '{FORECAST_TICKER_TAG_VALUE}'"
    found = pages(
        lambda token: client.search_runs(
            [experiment_id],
            f"{tagged} and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=FORECAST_PAGE,
            page_token=token,
        )
    )
    return itertools.islice(found, SEARCH_LIMIT)


def logged_forecasts(run, ticker: str) -> pd.DataFrame:
    """One forecast run's rows for `ticker`, labelled with the run and the model version that answered."""
    # From the run's artifact location: by run id, MLflow reads the run twice and searches its logged
    # models first (three requests more a forecast run, on a tracking server).
    table = pd.read_csv(
        mlflow.artifacts.download_artifacts(artifact_uri=f"{run.info.artifact_uri}/{FORECAST_TABLE_PATH}")
    )
    if TICKER_COLUMN in table:
        table = table[table[TICKER_COLUMN] == ticker]
    version = run.data.tags.get(TAG_MODEL_VERSION) or run.data.tags.get(TAG_MODEL_URI, "unknown")
    if MODEL_VERSION_COLUMN in table:
        table[MODEL_VERSION_COLUMN] = table[MODEL_VERSION_COLUMN].fillna(version).astype(str)
        table[MODEL_VERSION_COLUMN] = table[MODEL_VERSION_COLUMN].str.removesuffix(".0")
    else:
        table[MODEL_VERSION_COLUMN] = str(version)
    return table.assign(**{RUN_COLUMN: run.info.run_id})


def newest_scored(runs: Iterable[Run], ticker: str, prices: pd.DataFrame, window: int) -> pd.DataFrame:
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


@dataclass(frozen=True)
class Monitoring:
    """What monitoring found: the champion's degradation (None: not degraded, or nothing to judge yet),
    the realized metrics by version as people read them ('' when nothing was scored), and the tests that
    had too few days (None: none)."""

    degradation: str | None
    report: str = ""
    too_few_days: str | None = None


def monitor_ticker(
    ticker: str,
    data_source: str,
    quandl_database: str,
    checks: PriceChecks,
    window: int,
    alpha: float,
    now: pd.Timestamp,
) -> Monitoring:
    """Read the ticker's prices (the closes by `now`) as training does, then score its logged forecasts."""
    raw = fetch_raw_prices(data_source, ticker, quandl_database, now, checks)
    prices = load_prices(raw.content, raw.resolved_source, checks=checks).prices
    return monitor(ticker, prices, window, alpha)


def monitor(ticker: str, prices: pd.DataFrame, window: int, alpha: float) -> Monitoring:
    """Score the newest `window` forecast runs with real closes in `prices`, log them on the active run,
    and judge the champion by the tests at level `alpha` (monitor_alpha)."""
    client = MlflowClient()
    run = mlflow.active_run()
    scored = newest_scored(forecast_runs(client, run.info.experiment_id, ticker), ticker, prices, window)
    champion = alias_version_number(client, registered_model_name(ticker), CHAMPION_ALIAS)
    mlflow.set_tag(TAG_CHAMPION_VERSION, champion)
    if scored.empty:
        logger.info("No logged forecast of %s has a date with a real close yet: nothing to score", ticker)
        mlflow.log_metrics({"forecasts_scored": 0, "days_scored": 0})
        mlflow.set_tag(TAG_DEGRADED, "false")
        return Monitoring(None)
    table = by_version(scored)
    mlflow.log_text(table.to_csv(index=False), MONITOR_BY_VERSION_PATH)
    mlflow.log_text(scored.to_csv(index=False, date_format="%Y-%m-%d"), MONITOR_SCORED_DAYS_PATH)
    mlflow.log_metrics({"forecasts_scored": scored[RUN_COLUMN].nunique(), "days_scored": len(scored)})
    report = (
        f"Realized forecasts of {ticker} through {prices[DATE_COLUMN].iloc[-1]:%Y-%m-%d}, by version:\n"
        + table.to_string(index=False, float_format=lambda value: f"{value:.4f}")
    )
    champion_days = scored[scored[MODEL_VERSION_COLUMN] == champion]
    if champion_days.empty:
        logger.info("The champion (version %s) has no scored forecast yet", champion or "none")
        mlflow.set_tag(TAG_DEGRADED, "false")
        return Monitoring(None, report)
    metrics = realized_metrics(champion_days)
    mlflow.log_metrics({f"realized_{name}": value for name, value in metrics.items()})
    judgement = judge(champion_days, alpha)
    mlflow.log_metrics(judgement.metrics)
    mlflow.set_tag(TAG_DEGRADED, str(judgement.degradation is not None).lower())
    if judgement.degradation:
        mlflow.set_tag(TAG_DEGRADATION, judgement.degradation)
    if judgement.too_few_days:
        logger.info("The champion (version %s): %s", champion, judgement.too_few_days)
        mlflow.set_tag(TAG_TOO_FEW_DAYS, judgement.too_few_days)
    return Monitoring(judgement.degradation, report, judgement.too_few_days)
