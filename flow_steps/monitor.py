"""Monitor: score a ticker's logged forecasts against the closes that then happened.

    python -m flow_steps.monitor --company-abbreviation MSFT --data-source sample

Finds the newest `window_forecasts` forecast runs of the ticker (in this experiment) whose dates now
have a real close in `data_source`, scores them per model version (RMSE against the naive forecast over
the same days, interval hits), and logs a `monitor` run. When the champion's realized RMSE / naive is
above `max_rmse_vs_naive`, or its 80% coverage is outside [`min_coverage_80`, `max_coverage_80`], the
run is tagged `degraded=true`, one line says why, and with `fail_on_degradation` the command exits 2.
The work is deployment/realized.py's; this is its command line and its MLflow run.
"""

from __future__ import annotations

import logging
import sys

import click
import mlflow
import pandas as pd

from flow_steps.config.as_of import resolve_as_of
from flow_steps.config.entry_points import check_option, options
from flow_steps.config.names import MONITOR_ENTRY_POINT, TAG_AS_OF, TAG_DEGRADED
from flow_steps.config.values import PriceChecks
from flow_steps.data.sources import refuse_embedded_secrets
from flow_steps.data.tickers import normalize_ticker
from flow_steps.deployment.degradation import Thresholds
from flow_steps.deployment.realized import Monitoring, monitor_ticker
from flow_steps.runtime.lifecycle import run_step

logger = logging.getLogger(__name__)

DEGRADED_EXIT_CODE = 2


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
    as_of: str,
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
    outcome: list[Monitoring] = []
    now = resolve_as_of(as_of, pd.Timestamp.now(tz="UTC"))

    def work() -> None:
        found = monitor_ticker(
            ticker, data_source, quandl_database, PriceChecks(**checks), window_forecasts, thresholds, now
        )
        mlflow.set_tag(TAG_AS_OF, now.isoformat())
        if found.report:
            click.echo(found.report)
        outcome.append(found)

    params = {
        "company_abbreviation": company_abbreviation,
        "data_source": data_source,
        "quandl_database": quandl_database,
        "as_of": as_of,
        "window_forecasts": window_forecasts,
        "max_rmse_vs_naive": max_rmse_vs_naive,
        "min_coverage_80": min_coverage_80,
        "max_coverage_80": max_coverage_80,
        "fail_on_degradation": str(fail_on_degradation).lower(),
        **checks,
    }
    run_step(MONITOR_ENTRY_POINT, params, work)
    if outcome and outcome[0].degradation:
        logger.warning("The champion of %s is degraded: %s", ticker, outcome[0].degradation)
        if fail_on_degradation:
            sys.exit(DEGRADED_EXIT_CODE)
    elif outcome:
        logger.info("The champion of %s is within its thresholds", ticker)


if __name__ == "__main__":
    cli()
