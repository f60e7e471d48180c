"""`tiingo`: Tiingo's end-of-day REST API, `GET {base}/tiingo/daily/<TICKER>/prices`, key from
TIINGO_API_KEY sent only as the header `Authorization: Token <key>` (base URL from TIINGO_API_BASE).

Tiingo answers a JSON list of sessions with raw and adjusted prices (`close`, `adjClose`, `divCash`,
`splitFactor`, ...); it is stored as CSV with the session date in `date` and Tiingo's own field names,
so the pipeline trains on `adjClose` (split- and dividend-adjusted). Limits and every failure line:
docs/data.md.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import datetime
from urllib.parse import quote

import pandas as pd
import requests

from flow_steps.config.errors import SourceError
from flow_steps.config.names import TIINGO_SOURCE
from flow_steps.config.secrets import TIINGO_KEY_VARIABLE, mask_secrets
from flow_steps.data.sources.base import PriceSource, RawPrices, SourceOptions
from flow_steps.data.sources.http import TIMEOUT_VARIABLE, get_with_retries, network_failure, timeout_seconds

logger = logging.getLogger(__name__)

API_BASE_VARIABLE = "TIINGO_API_BASE"
DEFAULT_API_BASE = "https://api.tiingo.com"
# The free plan's published allowance, as read on 2026-12-06 (docs/data.md gives the sources): about 50
# requests an hour, 1,000 a day and 500 distinct symbols a month. The default pace stays below the hourly cap.
FREE_REQUESTS_PER_HOUR = 50
FREE_SYMBOLS_PER_MONTH = 500
DEFAULT_REQUESTS_PER_MINUTE = 0.75  # 45 an hour; a universe's requests_per_minute sets another (paid plans)
FULL_HISTORY_START = "1962-01-01"  # before Tiingo's oldest US sessions: the whole history is asked
SESSION_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
LIMIT_ADVICE = (
    f"Tiingo's free plan allows about {FREE_REQUESTS_PER_HOUR} requests an hour and "
    f"{FREE_SYMBOLS_PER_MONTH} symbols a month: wait and run again, lower a universe's requests_per_minute, "
    "or use a paid plan"
)


class TiingoSource(PriceSource):
    """Tiingo's end-of-day prices: fetched again every time (a series gains sessions)."""

    described = f"'{TIINGO_SOURCE}'"
    variables = (TIINGO_KEY_VARIABLE, API_BASE_VARIABLE)
    requests_per_minute = DEFAULT_REQUESTS_PER_MINUTE

    def claims(self, data_source: str) -> bool:
        return data_source == TIINGO_SOURCE

    def check(self, data_source: str) -> None:
        api_key()

    def check_tickers(self, data_source: str, tickers: list[str]) -> None:
        self.check(data_source)

    def fetch(self, data_source: str, ticker: str, options: SourceOptions) -> RawPrices:
        key = api_key()
        base = os.environ.get(API_BASE_VARIABLE, "").strip().rstrip("/") or DEFAULT_API_BASE
        where = f"Tiingo at {mask_secrets(base)}"
        url = f"{base}/tiingo/daily/{quote(ticker, safe='')}/prices"
        logger.info("Fetching Tiingo daily prices of %s from %s", ticker, mask_secrets(base))
        try:
            response = get_with_retries(
                requests.Session(),
                url,
                params=query(options.as_of),
                headers={"Authorization": f"Token {key}", "Accept": "application/json"},
            )
        except requests.RequestException as error:
            raise SourceError(network_failure(where, error)) from error
        return RawPrices(prices_csv(ticker, response.status_code, response.text), source_label(ticker, base))


def api_key() -> str:
    """TIINGO_API_KEY, or one line saying to set it (before any request)."""
    key = os.environ.get(TIINGO_KEY_VARIABLE, "").strip()
    if not key:
        raise SourceError(
            f"data_source '{TIINGO_SOURCE}' needs an API key: set {TIINGO_KEY_VARIABLE} (a free key comes "
            "with a Tiingo account, https://www.tiingo.com/account/api/token)"
        )
    return key


def query(as_of: datetime | None) -> dict[str, str]:
    """The whole history in JSON, up to as_of's date when there is one."""
    params = {"startDate": FULL_HISTORY_START, "format": "json"}
    if as_of is not None:
        params["endDate"] = as_of.date().isoformat()
    return params


def source_label(ticker: str, base: str) -> str:
    """The lineage recorded: `tiingo:IBM@https://api.tiingo.com` (never the key)."""
    return mask_secrets(f"{TIINGO_SOURCE}:{ticker}@{base}")


def prices_csv(ticker: str, status: int, body: str) -> bytes:
    """Tiingo's answer as CSV bytes, or one line saying what it answered instead and what to do."""
    if status == 200:
        answer = parsed(ticker, body)
        if isinstance(answer, list):
            return records_csv(ticker, answer)
        raise SourceError(detail_failure(ticker, status, answer))
    raise SourceError(status_failure(ticker, status, detail_of(body)))


def parsed(ticker: str, body: str) -> list | str:
    """The JSON list of sessions, or the text of what Tiingo answered instead."""
    text = body.strip()
    if text[:1] == "<":
        raise SourceError(
            f"Tiingo answered an HTML page for {ticker} where JSON prices were expected: check "
            f"{API_BASE_VARIABLE} (a proxy or login page answers, not the API)"
        )
    try:
        answer = json.loads(text)
    except ValueError:
        return text  # Tiingo says some limits in plain text, with status 200
    if isinstance(answer, list):
        return answer
    return detail_of(text)


def detail_of(body: str) -> str:
    """Tiingo's `{"detail": "..."}` message, else the start of the body (one line, secrets masked)."""
    try:
        answer = json.loads(body)
        text = str(answer.get("detail", answer)) if isinstance(answer, dict) else str(answer)
    except ValueError:
        text = body
    return mask_secrets(" ".join(text.split()))[:200]


def detail_failure(ticker: str, status: int, detail: str) -> str:
    """One line for an answer that holds a message instead of prices."""
    lowered = detail.lower()
    if "run over" in lowered or "limit" in lowered:
        return f"Tiingo refused {ticker}: '{detail}'; {LIMIT_ADVICE}"
    if "not found" in lowered:
        return status_failure(ticker, 404, detail)
    if "token" in lowered or "authoriz" in lowered or "permission" in lowered:
        return status_failure(ticker, 401, detail)
    return f"Tiingo answered no prices for {ticker} (HTTP {status}): '{detail or 'an empty body'}'"


def status_failure(ticker: str, status: int, detail: str) -> str:
    """One line for an HTTP status other than 200 (429 and 5xx: after the retries)."""
    said = f": '{detail}'" if detail else ""
    if status in (401, 403):
        return (
            f"Tiingo refused the API key ({status}{said}): set {TIINGO_KEY_VARIABLE} to the token of a "
            "Tiingo account (https://www.tiingo.com/account/api/token)"
        )
    if status == 404:
        return (
            f"Tiingo does not know the ticker {ticker} (404{said}): check company_abbreviation against "
            "Tiingo's list of supported tickers"
        )
    if status == 429:
        return (
            f"Tiingo still answered 429 Too Many Requests for {ticker} after its retries within "
            f"{TIMEOUT_VARIABLE}={timeout_seconds():g} s{said}; {LIMIT_ADVICE}"
        )
    if status >= 500:
        return f"Tiingo still answered server error {status} for {ticker} after its retries: try again later"
    return f"Tiingo answered HTTP {status} for {ticker}{said}"


def records_csv(ticker: str, records: list) -> bytes:
    """Tiingo's sessions as CSV: `date` as YYYY-MM-DD first, then Tiingo's fields as it named them."""
    if not records:
        raise SourceError(
            f"Tiingo has no prices for {ticker} in the range asked (an empty answer): check "
            "company_abbreviation and the dates, or whether the ticker traded then"
        )
    if not all(isinstance(record, dict) and isinstance(record.get("date"), str) for record in records):
        raise SourceError(f"Tiingo answered {ticker}'s prices without a date in every session")
    frame = pd.DataFrame.from_records(records)
    dates = frame["date"].str[:10]
    if not dates.str.fullmatch(SESSION_DATE).all():
        bad = frame["date"][~dates.str.fullmatch(SESSION_DATE)].iloc[0]
        raise SourceError(f"Tiingo answered a date that does not start with YYYY-MM-DD for {ticker}: '{bad}'")
    frame["date"] = dates
    return frame.to_csv(index=False).encode()
