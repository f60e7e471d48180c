"""Monitor: score a ticker's logged forecasts against the closes that then happened.

    python -m flow_steps.monitor --company-abbreviation MSFT --data-source sample

Finds the newest `window_forecasts` forecast runs of the ticker (in this experiment) whose dates now
have a real close in `data_source`, scores them per model version (RMSE against the naive forecast over
the same days, interval hits), and logs a `monitor` run. The champion's one-day-ahead forecasts are
tested at `monitor_alpha`: when its squared errors are significantly above the naive forecast's
(Diebold-Mariano) or an interval fails Kupiec's or Christoffersen's test, the run is tagged
`degraded=true`, one line names the test, and with `fail_on_degradation` the command exits 2. A test
with too few days says how many it needs (tag `too_few_days`) and flags nothing.
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
from flow_steps.deployment.realized import Monitoring, monitor_ticker
from flow_steps.runtime.lifecycle import run_step

logger = logging.getLogger(__name__)

DEGRADED_EXIT_CODE = 2


@click.command(
    help="Score the ticker's logged forecasts whose dates now have a real close in DATA_SOURCE (per model "
    "version: RMSE against the naive forecast, interval coverage) and flag a champion that the tests at "
    f"MONITOR_ALPHA find degraded (tag {TAG_DEGRADED}=true; exit {DEGRADED_EXIT_CODE} with "
    "--fail-on-degradation true)."
)
@options(MONITOR_ENTRY_POINT)
def cli(
    company_abbreviation: str,
    data_source: str,
    quandl_database: str,
    as_of: str,
    window_forecasts: int,
    monitor_alpha: float,
    fail_on_degradation: bool,
    **checks: str | int | float,
) -> None:
    check_option(refuse_embedded_secrets, data_source, "--data-source")
    ticker = normalize_ticker(company_abbreviation)
    outcome: list[Monitoring] = []
    now = resolve_as_of(as_of, pd.Timestamp.now(tz="UTC"))

    def work() -> None:
        found = monitor_ticker(
            ticker, data_source, quandl_database, PriceChecks(**checks), window_forecasts, monitor_alpha, now
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
        "monitor_alpha": monitor_alpha,
        "fail_on_degradation": str(fail_on_degradation).lower(),
        **checks,
    }
    run_step(MONITOR_ENTRY_POINT, params, work)
    if outcome and outcome[0].degradation:
        logger.warning("The champion of %s is degraded: %s", ticker, outcome[0].degradation)
        if fail_on_degradation:
            sys.exit(DEGRADED_EXIT_CODE)
    elif outcome:
        logger.info("No test at monitor_alpha %g finds the champion of %s degraded", monitor_alpha, ticker)


if __name__ == "__main__":
    cli()
