"""Where daily prices come from: one module per source, behind the interface of `base.py`.

`data_source` names a source: `sample` (the bundled prices, offline), `quandl` (Quandl's API), `tiingo`
(Tiingo's end-of-day API), `yahoo` (Yahoo Finance through yfinance, no key), an http(s):// URL of a CSV
file, or a local CSV path. API keys never leave the sources: they are masked in every message, and the
lineage a source records names the dataset or URL, never the key.
"""

from __future__ import annotations

import pandas as pd

from flow_steps.config.errors import SourceError
from flow_steps.config.secrets import mask_secrets
from flow_steps.config.values import DEFAULT_CHECKS, PriceChecks
from flow_steps.data.closes import cut_unclosed
from flow_steps.data.sources.base import PriceSource, RawPrices, SourceOptions, described
from flow_steps.data.sources.file import FileSource
from flow_steps.data.sources.http import TIMEOUT_VARIABLE
from flow_steps.data.sources.quandl import QuandlSource
from flow_steps.data.sources.sample import SAMPLE_FILE, SampleSource
from flow_steps.data.sources.tiingo import TiingoSource
from flow_steps.data.sources.url import UrlSource, refuse_embedded_secrets
from flow_steps.data.sources.yahoo import YahooSource

# Asked in this order; the first that claims a data_source serves it (a file: whatever has no scheme).
NAMED_SOURCES: tuple[PriceSource, ...] = (
    SampleSource(),
    QuandlSource(),
    TiingoSource(),
    YahooSource(),
    UrlSource(),
)
SOURCES: tuple[PriceSource, ...] = (*NAMED_SOURCES, FileSource(others=NAMED_SOURCES))
# Every variable a source reads (keys, base URLs, paces, the timeout): what a universe's workers need.
SOURCE_VARIABLES = tuple(dict.fromkeys([*(name for s in SOURCES for name in s.variables), TIMEOUT_VARIABLE]))

__all__ = [
    "SAMPLE_FILE",
    "SOURCES",
    "SOURCE_VARIABLES",
    "PriceSource",
    "RawPrices",
    "SourceOptions",
    "check_data_source",
    "fetch_raw_prices",
    "refuse_embedded_secrets",
    "source_for",
]


def source_for(data_source: str) -> PriceSource:
    """The source that serves `data_source`, or one line saying what data_source may be."""
    for source in SOURCES:
        if source.claims(data_source):
            return source
    raise SourceError(
        f"data_source '{mask_secrets(data_source)}' has an unsupported scheme: use {described(SOURCES)}"
    )


def check_data_source(data_source: str) -> PriceSource:
    """Refuse, before any work, a data_source that names no source or that its source refuses (a URL
    with a literal key); the source that serves it."""
    refuse_embedded_secrets(data_source)
    source = source_for(data_source)
    source.check(data_source)
    return source


def fetch_raw_prices(
    data_source: str,
    ticker: str,
    quandl_database: str = "WIKI",
    now: pd.Timestamp | None = None,
    checks: PriceChecks = DEFAULT_CHECKS,
) -> RawPrices:
    """The raw price file for `ticker` from `data_source`, as the source gave it, without the bars that
    were not closes at `now` (UTC; default: the clock) on `checks.calendar` (data/closes.py)."""
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    source = check_data_source(data_source)
    raw = source.fetch(
        data_source, ticker, SourceOptions(quandl_database=quandl_database, as_of=now.to_pydatetime())
    )
    cut = cut_unclosed(raw.content, raw.resolved_source, checks.date_format, checks.calendar, now)
    return RawPrices(cut.content, raw.resolved_source)
