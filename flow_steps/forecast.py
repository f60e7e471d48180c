"""Forecast the next trading days' closes with a logged or registered model, as a table.

    python -m flow_steps.forecast --model models:/stock-MSFT-lstm@champion --data-source sample --horizon 5

The work is deployment/prediction.py's; this is its command line and its MLflow run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click
import mlflow
import pandas as pd

from flow_steps.config.as_of import resolve_as_of
from flow_steps.config.entry_points import check_option, options
from flow_steps.config.errors import PipelineError
from flow_steps.config.names import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    FORECAST_ENTRY_POINT,
    FORECAST_TABLE_PATH,
    TAG_AS_OF,
    TAG_MODEL_URI,
    forecast_tags,
)
from flow_steps.config.values import PriceChecks
from flow_steps.data.sources import refuse_embedded_secrets
from flow_steps.data.tickers import TICKER_PLACEHOLDER, parse_tickers
from flow_steps.deployment.prediction import (
    forecast,
    forecast_tickers,
    registry_version_tags,
    render,
    render_many,
    resolve_model_uri,
    write_csv,
)
from flow_steps.runtime.lifecycle import run_step

logger = logging.getLogger(__name__)


@click.command(
    help="Forecast the next HORIZON trading days' closes with a logged or registered model and print "
    "them as a table (dates, forecast close, change from the last close); --output also writes a CSV. "
    "The table is logged to an MLflow run named 'forecast' as forecast/forecast.csv. Several tickers "
    "(--company-abbreviation MSFT,AAPL, with {ticker} in --data-source) give one table of each one's "
    "champion (or challenger) forecast."
)
@options(FORECAST_ENTRY_POINT)
def cli(
    model: str,
    company_abbreviation: str,
    data_source: str,
    quandl_database: str,
    as_of: str,
    horizon: int,
    output: str,
    **checks: str | int | float,
) -> None:
    check_option(refuse_embedded_secrets, data_source, "--data-source")  # before it is logged
    tickers = parse_tickers(company_abbreviation)
    if len(tickers) > 1 and model not in (CHAMPION_ALIAS, CHALLENGER_ALIAS):
        raise click.BadParameter(
            f"with several tickers, --model is '{CHAMPION_ALIAS}' or '{CHALLENGER_ALIAS}' (each one's own)",
            param_hint="'--model'",
        )
    model_uri = resolve_model_uri(model, tickers[0])
    now = resolve_as_of(as_of, pd.Timestamp.now(tz="UTC"))  # one instant for every ticker

    def log_and_write(table: pd.DataFrame) -> None:
        mlflow.log_text(table.to_csv(index=False, date_format="%Y-%m-%d"), FORECAST_TABLE_PATH)
        if output:
            write_csv(table, Path(output))
            logger.info("Wrote %s", output)

    def work() -> None:
        mlflow.set_tags(
            {
                TAG_MODEL_URI: model_uri,
                **forecast_tags(tickers),
                TAG_AS_OF: now.isoformat(),
                **registry_version_tags(model_uri),
            }
        )
        prices, table = forecast(
            model_uri, tickers[0], data_source, quandl_database, horizon, PriceChecks(**checks), now
        )
        log_and_write(table)
        click.echo(render(prices, table, model_uri))

    def work_many() -> None:
        table, failures = forecast_tickers(
            model, tickers, data_source, quandl_database, horizon, PriceChecks(**checks), now
        )
        mlflow.set_tags(
            {
                TAG_MODEL_URI: resolve_model_uri(model, TICKER_PLACEHOLDER),
                **forecast_tags(tickers),
                TAG_AS_OF: now.isoformat(),
            }
        )
        log_and_write(table)
        click.echo(render_many(table, model))
        if failures:
            raise PipelineError(
                f"no forecast for {len(failures)} of {len(tickers)} tickers: {'; '.join(failures)}"
            )

    params = {
        "model": model,
        "company_abbreviation": company_abbreviation,
        "data_source": data_source,
        "quandl_database": quandl_database,
        "as_of": as_of,
        "horizon": horizon,
        **checks,
        **({"output": output} if output else {}),
    }
    run_step(FORECAST_ENTRY_POINT, params, work if len(tickers) == 1 else work_many)


if __name__ == "__main__":
    cli()
