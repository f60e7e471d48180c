"""Where daily prices come from. Each source returns the file's bytes exactly as it gave them.

Sources: `sample` (the bundled public-domain Microsoft prices, offline) and a local CSV path.
A new source is one more branch in `fetch_raw_prices` returning `RawPrices`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from flow_steps.constants import SAMPLE_SOURCE, SAMPLE_TICKER
from flow_steps.errors import SourceError

logger = logging.getLogger(__name__)

SAMPLE_FILE = Path(__file__).resolve().parent / "sample_data" / "WIKI-MSFT.csv"


@dataclass(frozen=True)
class RawPrices:
    """A price file as the source gave it, and where it came from (never with credentials)."""

    content: bytes
    resolved_source: str


def fetch_raw_prices(data_source: str, ticker: str) -> RawPrices:
    """Fetch the raw price file for `ticker` from `data_source` (`sample` or a CSV path)."""
    if data_source == SAMPLE_SOURCE:
        return _sample(ticker)
    if "://" in data_source:
        raise SourceError(
            f"unknown data_source '{data_source}': use '{SAMPLE_SOURCE}' or a path to a CSV file"
        )
    return _local_file(Path(data_source).expanduser())


def _sample(ticker: str) -> RawPrices:
    if ticker.upper() != SAMPLE_TICKER:
        raise SourceError(
            f"the bundled sample holds {SAMPLE_TICKER} prices only, not {ticker}: "
            "set data_source to a CSV file of that ticker's prices"
        )
    logger.info("Using the bundled sample %s", SAMPLE_FILE.name)
    return RawPrices(SAMPLE_FILE.read_bytes(), f"{SAMPLE_SOURCE}:{SAMPLE_FILE.name}")


def _local_file(path: Path) -> RawPrices:
    if not path.is_file():
        raise SourceError(f"data_source '{path}' is neither '{SAMPLE_SOURCE}' nor an existing CSV file")
    logger.info("Reading prices from %s", path.resolve())
    return RawPrices(path.read_bytes(), path.resolve().as_uri())
