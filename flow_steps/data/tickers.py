"""Tickers: a symbol checked and upper-cased, a list or an @FILE of them, a source per ticker."""

from __future__ import annotations

import re
from pathlib import Path

from flow_steps.config.errors import PipelineError

TICKER_PLACEHOLDER = "{ticker}"  # in a data_source, replaced by each ticker (universe, forecast)
TICKER_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,19}$")


def normalize_ticker(company_abbreviation: str) -> str:
    """Upper-case ticker, refused unless it is a plain symbol (it names the artifact file)."""
    ticker = company_abbreviation.strip().upper()
    if not TICKER_PATTERN.match(ticker):
        raise PipelineError(
            f"company_abbreviation '{company_abbreviation}' is not a ticker symbol "
            "(letters, digits, '.', '_' or '-', at most 20)"
        )
    return ticker


def parse_tickers(text: str) -> list[str]:
    """`MSFT,aapl` or `@FILE` (one ticker per line, `#` comments) -> unique upper-case tickers, in order."""
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        if not path.is_file():
            raise PipelineError(f"tickers '{text}': {path} is not a file")
        items = [line.split("#", 1)[0] for line in path.read_text().splitlines()]
    else:
        items = text.split(",")
    tickers = list(dict.fromkeys(normalize_ticker(item) for item in items if item.strip()))
    if not tickers:
        raise PipelineError(f"tickers '{text}' names no ticker")
    return tickers


def ticker_source(data_source: str, ticker: str) -> str:
    """`prices/WIKI-{ticker}.csv` -> `prices/WIKI-AAPL.csv`; other sources as they are."""
    return data_source.replace(TICKER_PLACEHOLDER, ticker)
