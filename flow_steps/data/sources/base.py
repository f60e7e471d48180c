"""What a price source is: one small interface, one module per source beside this one.

A source says which `data_source` values it serves (`claims`), refuses a bad one before anything starts
(`check`, `check_tickers`), fetches a ticker's file as the source gave it (`fetch`, with the lineage to
record), says when a finished download may be reused (`reuse_tags`) and whether the workers of a remote
Ray cluster can reach it (`reachable_from_cluster`). Adding one: docs/architecture.md.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime

from flow_steps.config.errors import PipelineError
from flow_steps.config.secrets import mask_secrets
from flow_steps.data.tickers import TICKER_PLACEHOLDER


@dataclass(frozen=True)
class RawPrices:
    """A price file as the source gave it, and where it came from (never with credentials): the lineage
    recorded on the download run."""

    content: bytes
    resolved_source: str


@dataclass(frozen=True)
class SourceOptions:
    """What a fetch may need besides the ticker (each source reads what concerns it)."""

    quandl_database: str = "WIKI"
    as_of: datetime | None = None  # "now" for this fetch (UTC): a source may ask for nothing later


class PriceSource(ABC):
    """One price source (see the module)."""

    described: str  # in messages: how data_source names it ("'sample'"), or what it takes ("a URL")
    reachable_from_cluster: bool = True  # can a remote cluster's workers fetch it themselves?
    # A universe's pace for this source (requests a minute, below the provider's free allowance; see
    # docs/data.md), or None: no limit to respect (local files, the bundled sample).
    requests_per_minute: float | None = None
    variables: tuple[str, ...] = ()  # environment variables it reads: a universe forwards them to workers

    @abstractmethod
    def claims(self, data_source: str) -> bool:
        """True when `data_source` names this source."""

    @abstractmethod
    def fetch(self, data_source: str, ticker: str, options: SourceOptions) -> RawPrices:
        """The ticker's price file as the source gave it."""

    def check(self, data_source: str) -> None:
        """Refuse, before anything starts, a value this source cannot serve (no network)."""
        return None

    def check_tickers(self, data_source: str, tickers: list[str]) -> None:
        """Refuse, before a universe starts, tickers this value cannot serve."""
        return None

    def reuse_tags(self, data_source: str) -> dict[str, str] | None:
        """Tags a finished download run must carry to be reused, or None: fetched again every time
        (what a remote source serves may have changed)."""
        return None


def check_template(source: PriceSource, data_source: str, tickers: list[str]) -> None:
    """A path or URL serves several tickers only through {ticker}; without it, it is checked as is."""
    if TICKER_PLACEHOLDER in data_source:
        return
    if len(tickers) > 1:
        raise PipelineError(
            f"data_source '{mask_secrets(data_source)}' has no {TICKER_PLACEHOLDER}: every ticker would "
            "read the same prices"
        )
    source.check(data_source)


def described(sources: tuple[PriceSource, ...]) -> str:
    """`'sample', 'quandl', a URL or an existing CSV file`: what data_source may be, for messages."""
    names = [source.described for source in sources]
    return f"{', '.join(names[:-1])} or {names[-1]}"
