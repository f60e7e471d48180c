"""Step 2: raw price CSV -> `transformed-data/prices.csv` (Date ascending, one `Close` column)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import click
import mlflow
import pandas as pd

from flow_steps.config.entry_points import options
from flow_steps.config.names import (
    DATE_COLUMN,
    ROWS_OUT_METRIC,
    TAG_PRICE_COLUMN,
    TAG_SOURCE_NEWEST_FIRST,
    TAG_TICKER,
    TRANSFORM_STEP,
    TRANSFORMED_DATA_PATH,
)
from flow_steps.config.values import PriceChecks
from flow_steps.data.ingest import load_prices
from flow_steps.runtime.inputs import input_file, local_input, log_prices_input
from flow_steps.runtime.lifecycle import record_price_checks, run_step

logger = logging.getLogger(__name__)


def transform(dataset_stock_csv: str, max_row_limit: int, checks: PriceChecks) -> None:
    """Clean the raw prices, log what was dropped, and log the prepared CSV."""
    path = input_file(dataset_stock_csv, "dataset_stock_csv")
    loaded = load_prices(path.read_bytes(), path.name, max_row_limit, checks)
    log_prices_input(loaded.table, "dataset_stock_csv", dataset_stock_csv)
    prepared, report = loaded.prices, loaded.report
    record_price_checks(  # with the step's tags and counts, in one request
        report,
        tags={
            TAG_TICKER: path.stem,  # the raw file is raw-data/<TICKER>.csv
            TAG_PRICE_COLUMN: report.price_column,
            TAG_SOURCE_NEWEST_FIRST: str(report.newest_first),
        },
        metrics={
            "rows_in": report.rows_in,
            ROWS_OUT_METRIC: report.rows_out,
            "missing_rows_dropped": report.missing_dropped,
            "duplicate_rows_dropped": report.duplicates_dropped,
            "limit_rows_dropped": report.limit_dropped,
        },
    )
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / Path(TRANSFORMED_DATA_PATH).name
        write_prices(prepared, output)
        mlflow.log_artifact(str(output), artifact_path=str(Path(TRANSFORMED_DATA_PATH).parent))
    logger.info(
        "Prepared %d of %d rows from '%s' (%s .. %s); dropped %d missing, %d duplicate, %d over the limit",
        report.rows_out,
        report.rows_in,
        report.price_column,
        prepared[DATE_COLUMN].iloc[0].date(),
        prepared[DATE_COLUMN].iloc[-1].date(),
        report.missing_dropped,
        report.duplicates_dropped,
        report.limit_dropped,
    )


def write_prices(prepared: pd.DataFrame, path: Path) -> None:
    """Write `Date, Close` with ISO dates and full float precision."""
    prepared.to_csv(path, index=False, date_format="%Y-%m-%d")


@click.command(
    help="Clean a raw price CSV: sort by date ascending, drop duplicate dates, use the adjusted "
    "close when the source has one, keep the most recent rows. Logs the artifact "
    f"{TRANSFORMED_DATA_PATH} with columns Date, Close."
)
@options(TRANSFORM_STEP)
def cli(dataset_stock_csv: str, max_row_limit: int, **checks: str | int | float) -> None:
    run_step(
        TRANSFORM_STEP,
        {"dataset_stock_csv": dataset_stock_csv, "max_row_limit": max_row_limit, **checks},
        lambda: transform(local_input(dataset_stock_csv), max_row_limit, PriceChecks(**checks)),
        output=lambda: mlflow.get_artifact_uri(TRANSFORMED_DATA_PATH),
    )


if __name__ == "__main__":
    cli()
