"""A local CSV file: `data_source` is its path (`{ticker}` in it names one file per ticker)."""

from __future__ import annotations

import logging
from pathlib import Path

from flow_steps.config.errors import SourceError
from flow_steps.config.names import TAG_RAW_SHA256
from flow_steps.data.reading import sha256_bytes
from flow_steps.data.sources.base import PriceSource, RawPrices, SourceOptions, check_template, described

logger = logging.getLogger(__name__)


class FileSource(PriceSource):
    """A file on this machine: reused while its content is unchanged; a remote cluster cannot read it."""

    described = "an existing CSV file"
    reachable_from_cluster = False

    def __init__(self, others: tuple[PriceSource, ...]):
        self.others = others  # the sources asked before this one, named when a path names no file

    def claims(self, data_source: str) -> bool:
        return "://" not in data_source

    def check(self, data_source: str) -> None:
        if not Path(data_source).expanduser().is_file():
            raise SourceError(f"data_source '{data_source}' is not {described((*self.others, self))}")

    def check_tickers(self, data_source: str, tickers: list[str]) -> None:
        check_template(self, data_source, tickers)

    def fetch(self, data_source: str, ticker: str, options: SourceOptions) -> RawPrices:
        path = Path(data_source).expanduser()
        logger.info("Reading prices from %s", path.resolve())
        return RawPrices(path.read_bytes(), path.resolve().as_uri())

    def reuse_tags(self, data_source: str) -> dict[str, str] | None:
        path = Path(data_source).expanduser()
        return {TAG_RAW_SHA256: sha256_bytes(path.read_bytes())} if path.is_file() else None
