"""Step 1: fetch daily prices and log them, as the source gave them, as `raw-data/<TICKER>.csv`."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import click
import mlflow
import pandas as pd

from flow_steps.config.as_of import resolve_as_of
from flow_steps.config.entry_points import check_option, options
from flow_steps.config.names import (
    DOWNLOAD_STEP,
    RAW_DATA_DIR,
    TAG_AS_OF,
    TAG_DATA_SOURCE,
    TAG_RAW_FIRST_DATE,
    TAG_RAW_LAST_DATE,
    TAG_RAW_ROWS,
    TAG_RAW_SHA256,
    raw_data_path,
)
from flow_steps.config.values import PriceChecks
from flow_steps.data.ingest import load_prices
from flow_steps.data.reading import sha256_bytes, summarize_raw
from flow_steps.data.sources import fetch_raw_prices, refuse_embedded_secrets
from flow_steps.data.tickers import normalize_ticker
from flow_steps.runtime.lifecycle import record_price_checks, run_step

logger = logging.getLogger(__name__)


def download(
    company_abbreviation: str, data_source: str, quandl_database: str, now: pd.Timestamp, checks: PriceChecks
) -> None:
    """Fetch, check and log the raw price file (the closes by `now`) with its lineage tags."""
    ticker = normalize_ticker(company_abbreviation)
    raw = fetch_raw_prices(data_source, ticker, quandl_database, now, checks)
    # Refuse bad data here, before anything downstream runs.
    loaded = load_prices(raw.content, raw.resolved_source, checks=checks)
    summary = summarize_raw(loaded.table, loaded.report.date_format)
    lineage = {
        TAG_DATA_SOURCE: raw.resolved_source,
        TAG_AS_OF: now.isoformat(),
        TAG_RAW_SHA256: sha256_bytes(raw.content),
        TAG_RAW_ROWS: str(summary.rows),
        TAG_RAW_FIRST_DATE: summary.first_date,
        TAG_RAW_LAST_DATE: summary.last_date,
    }
    record_price_checks(loaded.report, tags=lineage)  # one request
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{ticker}.csv"
        path.write_bytes(raw.content)
        mlflow.log_artifact(str(path), artifact_path=RAW_DATA_DIR)
    logger.info(
        "Logged %s/%s.csv: %d rows, %s .. %s, price column '%s'",
        RAW_DATA_DIR,
        ticker,
        summary.rows,
        summary.first_date,
        summary.last_date,
        loaded.report.price_column,
    )


@click.command(
    help="Fetch daily prices for a ticker and log them unchanged as the artifact "
    "raw-data/<TICKER>.csv, with their SHA-256, row count and date range as tags."
)
@options(DOWNLOAD_STEP)
def cli(
    company_abbreviation: str, data_source: str, quandl_database: str, as_of: str, **checks: str | int | float
) -> None:
    check_option(refuse_embedded_secrets, data_source, "--data-source")  # before it is logged
    run_step(
        DOWNLOAD_STEP,
        {
            "company_abbreviation": company_abbreviation,
            "data_source": data_source,
            "quandl_database": quandl_database,
            "as_of": as_of,
            **checks,
        },
        lambda: download(
            company_abbreviation,
            data_source,
            quandl_database,
            resolve_as_of(as_of, pd.Timestamp.now(tz="UTC")),
            PriceChecks(**checks),
        ),
        output=lambda: mlflow.get_artifact_uri(raw_data_path(normalize_ticker(company_abbreviation))),
    )


if __name__ == "__main__":
    cli()
