"""`sample`: the bundled public-domain Microsoft prices (Quandl's WIKI feed, 2000-2013), offline."""

from __future__ import annotations

import logging
from pathlib import Path

from flow_steps.config.errors import PipelineError, SourceError
from flow_steps.config.names import QUANDL_SOURCE, SAMPLE_SOURCE, SAMPLE_TICKER
from flow_steps.data.sources.base import PriceSource, RawPrices, SourceOptions

logger = logging.getLogger(__name__)

SAMPLE_FILE = Path(__file__).resolve().parents[1] / "sample_data" / "WIKI-MSFT.csv"


class SampleSource(PriceSource):
    """The bundled file: part of the code version, so a finished download is always reusable."""

    described = f"'{SAMPLE_SOURCE}'"

    def claims(self, data_source: str) -> bool:
        return data_source == SAMPLE_SOURCE

    def fetch(self, data_source: str, ticker: str, options: SourceOptions) -> RawPrices:
        if ticker.upper() != SAMPLE_TICKER:
            raise SourceError(
                f"the bundled sample holds {SAMPLE_TICKER} prices only, not {ticker}: "
                f"use data_source={QUANDL_SOURCE}, a CSV URL or a CSV file for that ticker"
            )
        logger.info("Using the bundled sample %s", SAMPLE_FILE.name)
        return RawPrices(SAMPLE_FILE.read_bytes(), f"{SAMPLE_SOURCE}:{SAMPLE_FILE.name}")

    def check_tickers(self, data_source: str, tickers: list[str]) -> None:
        others = [ticker for ticker in tickers if ticker != SAMPLE_TICKER]
        if others:
            raise PipelineError(
                f"data_source '{SAMPLE_SOURCE}' holds {SAMPLE_TICKER} only, not {', '.join(others)}: "
                "give a path or URL with {ticker}, or 'quandl'"
            )

    def reuse_tags(self, data_source: str) -> dict[str, str]:
        return {}
