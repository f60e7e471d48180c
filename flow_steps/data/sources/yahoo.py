"""`yahoo`: Yahoo Finance's daily history through the `yfinance` package, no key (base URL from
YAHOO_API_BASE). Yahoo publishes no API and no limit, rate-limits scripts, and its terms are for personal
use: for schedules, `tiingo`. The file keeps Yahoo's columns; the pipeline trains on `Adj Close`."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pandas as pd

from flow_steps.config.errors import SourceError
from flow_steps.config.names import YAHOO_SOURCE
from flow_steps.data.sources.base import PriceSource, RawPrices, SourceOptions
from flow_steps.data.sources.http import MAX_RETRIES, TIMEOUT_VARIABLE, timeout_seconds, wait_before_retry

if TYPE_CHECKING:  # yfinance_seam imports curl_cffi: only a fetch loads it
    from flow_steps.data.sources.yfinance_seam import Answer, YahooSession

logger = logging.getLogger(__name__)

API_BASE_VARIABLE = "YAHOO_API_BASE"  # Yahoo's hosts replaced by this base URL (the tests' loopback server)
DEFAULT_API_BASE = "https://query2.finance.yahoo.com"  # where yfinance asks for prices
CHILD_MODULE = "flow_steps.data.sources.isolated_fetch"  # runs fetch_here in a process of its own
CHILD_START_SECONDS = 30.0  # the child's imports (pandas, yfinance, curl_cffi), on top of the timeout
REFUSED_EXIT = 3  # the child's exit code for a refusal, its last stderr line

# What to do when Yahoo will not serve a script, in every line that says so.
INSTEAD = "wait and run again, lower the pace (fewer tickers at once), or use data_source=tiingo"


def api_base() -> str | None:
    """YAHOO_API_BASE without its trailing slash, or None: Yahoo's own hosts."""
    return os.environ.get(API_BASE_VARIABLE, "").strip().rstrip("/") or None


class YahooSource(PriceSource):
    """Yahoo Finance: fetched again every time (a history gains rows, adjusted closes change)."""

    described = f"'{YAHOO_SOURCE}'"
    variables = (API_BASE_VARIABLE,)
    # Fetches a minute (yfinance makes 6 requests for one: its cookie page 3 times, a crumb, the timezone,
    # the history): Yahoo publishes no limit; 1 fetch is 6 requests a minute, 360 an hour, the lowest
    # figure repeated on the web (docs/data.md).
    requests_per_minute = 1.0

    def claims(self, data_source: str) -> bool:
        return data_source == YAHOO_SOURCE

    def fetch(self, data_source: str, ticker: str, options: SourceOptions) -> RawPrices:
        """In a process of its own (CHILD_MODULE): yfinance's state is process-wide, and curl_cffi's
        browser impersonation fails in a process that loaded TensorFlow (its own libcurl) first."""
        shown = api_base() or DEFAULT_API_BASE
        seconds = timeout_seconds()
        command = [sys.executable, "-m", CHILD_MODULE, ticker, end_date(options.as_of) or ""]
        try:
            done = subprocess.run(command, capture_output=True, timeout=seconds + CHILD_START_SECONDS)
        except subprocess.TimeoutExpired as error:
            raise SourceError(
                f"Yahoo Finance at {shown} did not answer within {seconds:g} s ({TIMEOUT_VARIABLE})"
            ) from error
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        for line in lines[:-1] if done.returncode else lines:
            logger.info("%s", line)  # the child's progress lines
        if done.returncode == REFUSED_EXIT:
            raise SourceError(lines[-1])
        if done.returncode != 0:
            last = lines[-1] if lines else "no output"
            raise SourceError(f"the Yahoo Finance fetch of {ticker} failed (exit {done.returncode}): {last}")
        return RawPrices(done.stdout, f"{YAHOO_SOURCE}:{ticker}@{shown}")


def fetch_here(ticker: str, end: str | None) -> bytes:
    """The ticker's daily history up to `end` (exclusive) as CSV, fetched in this process (the child's
    work), 429s retried within PRICE_SOURCE_TIMEOUT; a refusal is one SourceError line."""
    from yfinance.exceptions import YFRateLimitError

    from flow_steps.data.sources.yfinance_seam import YahooSession

    base = api_base()
    shown = base or DEFAULT_API_BASE
    seconds = timeout_seconds()
    deadline = time.monotonic() + seconds
    logger.info("Fetching Yahoo Finance daily prices of %s from %s (no key needed)", ticker, shown)
    retries = 0
    while True:
        session = YahooSession(base, deadline)
        try:
            frame = daily_history(session, ticker, end, seconds)
            break
        except YFRateLimitError as error:
            retry_after = session.last.retry_after if session.last else None
            wait = wait_before_retry(retries, retry_after, deadline - time.monotonic())
            if wait is None:
                raise SourceError(rate_limited(ticker, retries, seconds)) from error
            logger.warning("Yahoo Finance answered 429 Too Many Requests: retrying in %g s", wait)
            time.sleep(wait)
            retries += 1
        except Exception as error:  # yfinance raises its own, curl_cffi's and parsing errors
            raise SourceError(yahoo_failure(ticker, error, session.last, shown, seconds)) from error
        finally:
            session.close()
    if frame.empty:
        raise SourceError(no_prices(ticker, end))
    return price_csv(frame)


def daily_history(session: YahooSession, ticker: str, end: str | None, seconds: float) -> pd.DataFrame:
    """The ticker's whole daily history, unadjusted prices with `Adj Close`, dividends and splits."""
    import yfinance as yf

    from flow_steps.data.sources.yfinance_seam import yfinance_scope

    with yfinance_scope():
        return yf.Ticker(ticker, session=session).history(
            period="max", interval="1d", end=end, auto_adjust=False, actions=True, timeout=seconds
        )


def end_date(as_of: datetime | None) -> str | None:
    """The day after `as_of` (yfinance's end is exclusive): nothing later is asked for; None: up to now."""
    return None if as_of is None else (as_of.date() + timedelta(days=1)).isoformat()


def price_csv(frame: pd.DataFrame) -> bytes:
    """yfinance's frame as CSV: `Date` (the session's date, YYYY-MM-DD), then its columns as named."""
    table = frame.reset_index()
    table["Date"] = pd.DatetimeIndex(table["Date"]).strftime("%Y-%m-%d")
    return table.to_csv(index=False).encode()


def no_prices(ticker: str, end: str | None) -> str:
    """One line for an answer without a single price (`end`: the exclusive end asked for)."""
    until = f" before {end}" if end is not None else ""
    return f"Yahoo Finance has no daily prices for {ticker}{until}: check company_abbreviation and the date"


def rate_limited(ticker: str, retries: int, seconds: float) -> str:
    """One line for 429 answers past the retries or the time allowed."""
    return (
        f"Yahoo Finance still answered 429 Too Many Requests for {ticker} after {retries} of {MAX_RETRIES} "
        f"retries within {TIMEOUT_VARIABLE}={seconds:g} s: Yahoo rate-limits scripts; {INSTEAD}"
    )


def yahoo_failure(ticker: str, error: Exception, answer: Answer | None, base: str, seconds: float) -> str:
    """One line for a fetch that brought no prices: what Yahoo answered (or that it did not), and what
    to do. `answer` is the last HTTP answer received, None when none came."""
    from curl_cffi.requests.exceptions import HTTPError, RequestException, Timeout
    from yfinance.exceptions import YFPricesMissingError, YFTickerMissingError

    if isinstance(error, RequestException) and not isinstance(error, HTTPError):
        if isinstance(error, Timeout) or "timed out" in str(error).lower():
            return f"Yahoo Finance at {base} did not answer within {seconds:g} s ({TIMEOUT_VARIABLE})"
        return f"could not connect to Yahoo Finance at {base}: {curl_reason(error)}"
    if answer is not None and answer.status == 404:
        reason = answer.description or "Not Found"
        return (
            f"Yahoo Finance has no symbol {ticker} (404: {reason}): check company_abbreviation, Yahoo's "
            "symbol (e.g. BRK-B, VOD.L)"
        )
    if answer is not None and answer.status == 200 and answer.is_html:
        return (
            f"Yahoo Finance answered a web page, not prices, for {ticker} (a consent or browser-check page, "
            f"which Yahoo shows scripts it distrusts): {INSTEAD}"
        )
    if answer is not None and answer.status == 200 and not answer.head.strip():
        return f"Yahoo Finance answered nothing (an empty body) for {ticker}: {INSTEAD}"
    if isinstance(error, YFPricesMissingError) and error.yahoo_reason is None:
        return no_prices(ticker, None)
    if isinstance(error, YFTickerMissingError):
        return f"Yahoo Finance has no symbol {ticker} ({error.rationale}): check company_abbreviation"
    if answer is not None and answer.status in (401, 403):
        return f"Yahoo Finance refused the request for {ticker} ({answer.status}): {INSTEAD}"
    if answer is not None and answer.status >= 500:
        return f"Yahoo Finance answered server error {answer.status} for {ticker}: try again later"
    what = f"HTTP {answer.status}, {answer.content_type or 'no content type'}" if answer else "no answer"
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
    return f"Yahoo Finance's answer for {ticker} could not be read ({what}): {first_line}"


def curl_reason(error: Exception) -> str:
    """curl's reason in one short phrase: `Failed to connect to 127.0.0.1 port 9: Couldn't connect`."""
    text = str(error)
    found = re.search(r"curl: \(\d+\) (.*?)(?:\. See https?://\S+.*)?$", text, flags=re.DOTALL)
    return (found.group(1) if found else text).strip().splitlines()[0][:200]
