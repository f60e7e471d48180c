"""The `yahoo` source's pure parts: the host rewriting, the end date, the CSV it stores, its failure lines
and the yfinance state it holds to one fetch (the fetches themselves: tests/integration/test_yahoo.py)."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pandas as pd
import pytest
from curl_cffi.requests.exceptions import ConnectionError as CurlConnectionError
from curl_cffi.requests.exceptions import Timeout as CurlTimeout
from yfinance.exceptions import YFPricesMissingError, YFTzMissingError

from flow_steps.data.reading import price_column, read_price_table
from flow_steps.data.sources import NAMED_SOURCES, source_for
from flow_steps.data.sources.yahoo import (
    YahooSource,
    end_date,
    no_prices,
    price_csv,
    rate_limited,
    yahoo_failure,
)
from flow_steps.data.sources.yfinance_seam import Answer, rewritten, yfinance_scope
from tests.support.yahoo_server import UNKNOWN_SYMBOL

BASE = "http://127.0.0.1:8123"
NOT_FOUND = json.dumps({"chart": {"result": None, "error": UNKNOWN_SYMBOL}})  # as Yahoo answers 404


def test_yahoo_names_the_yahoo_source_keyless_and_paced():
    source = source_for("yahoo")
    assert isinstance(source, YahooSource) and source in NAMED_SOURCES
    assert not source.claims("Yahoo") and not source.claims("https://query2.finance.yahoo.com")
    assert 0 < source.requests_per_minute <= 6
    assert source.reuse_tags("yahoo") is None  # fetched again every time


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://query2.finance.yahoo.com/v8/finance/chart/IBM?range=1d",
            f"{BASE}/v8/finance/chart/IBM?range=1d",
        ),
        ("https://query1.finance.yahoo.com/v1/test/getcrumb", f"{BASE}/v1/test/getcrumb"),
        ("https://fc.yahoo.com", BASE),
        ("https://guce.yahoo.com/consent", f"{BASE}/consent"),
        ("https://notyahoo.com/v8/finance/chart/IBM", "https://notyahoo.com/v8/finance/chart/IBM"),
        ("https://example.org/yahoo.com", "https://example.org/yahoo.com"),
    ],
)
def test_yahoo_hosts_and_only_they_go_to_the_api_base(url, expected):
    assert rewritten(url, BASE) == expected
    assert rewritten(url, None) == url


def test_a_base_with_a_path_keeps_it():
    assert rewritten("https://query2.finance.yahoo.com/v8/x", "http://h:1/yahoo") == "http://h:1/yahoo/v8/x"


def test_as_of_asks_for_nothing_after_its_day():
    assert end_date(None) is None
    assert end_date(datetime(2026, 12, 4, 21, 30, tzinfo=UTC)) == "2026-12-05"


def yfinance_like_frame() -> pd.DataFrame:
    """What Ticker.history(auto_adjust=False, actions=True) returns: session dates at midnight New York."""
    index = pd.DatetimeIndex(["2003-02-14", "2003-02-18", "2003-02-19"], name="Date").tz_localize(
        "America/New_York"
    )
    return pd.DataFrame(
        {
            "Open": [47.0, 24.62, 24.82],
            "High": [48.0, 24.99, 24.88],
            "Low": [46.5, 24.4, 24.3],
            "Close": [48.3, 24.96, 24.53],
            "Adj Close": [18.2, 18.81, 18.54],
            "Volume": [60_000_000, 28_707_750, 46_902_700],
            "Dividends": [0.0, 0.0, 0.08],
            "Stock Splits": [0.0, 2.0, 0.0],
        },
        index=index,
    )


def test_the_stored_file_has_session_dates_and_the_pipeline_reads_its_adjusted_close():
    text = price_csv(yfinance_like_frame()).decode()
    assert text.splitlines()[0] == "Date,Open,High,Low,Close,Adj Close,Volume,Dividends,Stock Splits"
    assert [line.split(",")[0] for line in text.splitlines()[1:]] == [
        "2003-02-14",
        "2003-02-18",
        "2003-02-19",
    ]
    table = read_price_table(text, "yahoo:MSFT")
    assert price_column(table) == "Adj Close"


def answer(status: int, body: str, content_type: str = "application/json") -> Answer:
    return Answer(status, content_type, body)


def failure(error: Exception, last: Answer | None) -> str:
    line = yahoo_failure("IBM", error, last, BASE, 7.0)
    assert "\n" not in line
    return line


def test_an_unknown_symbol_is_named_with_yahoos_reason():
    line = failure(YFTzMissingError("IBMX"), answer(404, NOT_FOUND))
    assert line.startswith("Yahoo Finance has no symbol IBM (404: No data found, symbol may be delisted)")
    assert "company_abbreviation" in line


def test_a_web_page_answered_200_is_named_as_such_with_what_to_do():
    page = "<!DOCTYPE html><html><head><title>Yahoo is part of the Yahoo family of brands</title>"
    line = failure(ValueError("Expecting value: line 1 column 1 (char 0)"), answer(200, page, "text/html"))
    assert "answered a web page, not prices, for IBM" in line and "data_source=tiingo" in line


def test_an_empty_body_is_named():
    line = failure(ValueError("Expecting value: line 1 column 1 (char 0)"), answer(200, ""))
    assert "answered nothing (an empty body) for IBM" in line


def test_network_failures_name_the_base_and_the_time_allowed():
    assert failure(CurlTimeout("curl: (28) Operation timed out after 7001 milliseconds"), None) == (
        f"Yahoo Finance at {BASE} did not answer within 7 s (PRICE_SOURCE_TIMEOUT)"
    )
    refused = CurlConnectionError(
        "Failed to perform, curl: (7) Failed to connect to 127.0.0.1 port 9 after 0 ms: Could not connect "
        "to server. See https://curl.se/libcurl/c/libcurl-errors.html first for more details."
    )
    assert failure(refused, None) == (
        f"could not connect to Yahoo Finance at {BASE}: Failed to connect to 127.0.0.1 port 9 after 0 ms: "
        "Could not connect to server"
    )


def test_a_history_without_prices_is_one_line():
    error = YFPricesMissingError("IBM", " (1d 1962-01-02 -> 2026-12-06)")
    assert failure(error, answer(200, '{"chart":{"result":[{"meta":{}}]}}')) == no_prices("IBM", None)
    assert "before 2026-12-05" in no_prices("IBM", "2026-12-05")


def test_server_errors_and_refusals_say_what_happened():
    assert "server error 503" in failure(KeyError("chart"), answer(503, "busy", "text/plain"))
    assert "refused the request for IBM (403)" in failure(KeyError("chart"), answer(403, "no", "text/plain"))
    odd = failure(KeyError("instrumentType"), answer(200, '{"chart":{}}'))
    assert (
        odd
        == "Yahoo Finance's answer for IBM could not be read (HTTP 200, application/json): 'instrumentType'"
    )


def test_the_rate_limit_line_names_yahoo_the_limit_and_what_to_do():
    line = rate_limited("IBM", 3, 30.0)
    assert line.startswith("Yahoo Finance still answered 429 Too Many Requests for IBM after 3 of 3 retries")
    assert "PRICE_SOURCE_TIMEOUT=30 s" in line and "rate-limits scripts" in line
    assert "wait" in line and "pace" in line and "data_source=tiingo" in line


def yfinance_state() -> tuple:
    import yfinance.base as yf_base
    import yfinance.cache as yf_cache
    from yfinance.config import YfConfig
    from yfinance.data import YfData

    return (
        YfData._instances.get(YfData),
        YfConfig.debug.hide_exceptions,
        yf_cache._TzCacheManager._tz_cache,
        yf_cache._CookieCacheManager._Cookie_cache,
        yf_base._tz_info_fetch_ctr,
        logging.getLogger("yfinance").level,
    )


def test_a_fetch_changes_yfinances_state_only_while_it_runs():
    """yfinance's private names the scope relies on exist (a yfinance upgrade that renames them fails
    here), hold the fetch's values inside and their own again after, even when the fetch fails."""
    import yfinance.cache as yf_cache
    from yfinance.data import YfData

    before = yfinance_state()
    with pytest.raises(RuntimeError), yfinance_scope():
        inside = yfinance_state()
        assert YfData(session=None) is not before[0]  # a fresh one: no cookie or crumb of an earlier fetch
        raise RuntimeError("the fetch failed")
    assert inside[0] is None and inside[1] is False and inside[4] == 2
    assert isinstance(inside[2], yf_cache._TzCacheDummy) and isinstance(inside[3], yf_cache._CookieCacheDummy)
    assert inside[5] == logging.CRITICAL
    assert yfinance_state() == before
