"""yfinance, held to one fetch: the seam between the `yahoo` source and the yfinance package.

`YahooSession` is the curl_cffi session yfinance is given (it wants one: it impersonates a browser). It
sends every request for a Yahoo host to YAHOO_API_BASE when that is set (the tests' loopback server),
gives every request the time left of the fetch (yfinance gives its cookie request 30 s) and keeps the
last answer, so that a failure can say what Yahoo answered. `yfinance_scope` sets yfinance's
process-wide state for the fetch and puts it back after: errors raised (not logged), its log quiet, no
cookie, crumb or cached answer from an earlier fetch, no timezone or cookie files under ~/.cache, and the
timezone read from the chart answer only (not from quoteSummary). It reaches into yfinance's private
names, which yfinance==1.7.0 (pinned) has; tests/unit/test_yahoo.py checks that they are there.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from curl_cffi import requests as curl_requests

YAHOO_DOMAIN = "yahoo.com"
MIN_REQUEST_SECONDS = 0.5  # a request started at the deadline still gets an answer or a timeout
_ONE_FETCH_AT_A_TIME = threading.Lock()  # yfinance's state is process-wide


def rewritten(url: str, base: str | None) -> str:
    """`url` with a Yahoo host (query1/query2.finance, fc, guce, consent...) replaced by `base`; any
    other URL, or every URL when `base` is None, unchanged."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if base is None or not (host == YAHOO_DOMAIN or host.endswith("." + YAHOO_DOMAIN)):
        return url
    target = urlsplit(base)
    return urlunsplit((target.scheme, target.netloc, target.path + parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class Answer:
    """What an HTTP answer was, for the failure lines: status, content type, the start of the body."""

    status: int
    content_type: str
    head: str
    retry_after: str | None = None

    @property
    def is_html(self) -> bool:
        return "html" in self.content_type.lower() or self.head.lstrip()[:1] == "<"

    @property
    def description(self) -> str | None:
        """Yahoo's own reason in a JSON error (`"description":"No data found, symbol may be delisted"`)."""
        found = re.search(r'"description"\s*:\s*"([^"]{1,200})"', self.head)
        return found.group(1) if found else None


class YahooSession(curl_requests.Session):
    """A browser-like curl_cffi session that sends Yahoo's hosts to `base` and gives every request the
    time left until `deadline` (time.monotonic()), whatever timeout yfinance asks for."""

    def __init__(self, base: str | None, deadline: float) -> None:
        super().__init__(impersonate="chrome")
        self.base = base
        self.deadline = deadline
        self.last: Answer | None = None  # the last answer received

    def request(self, method, url, *args, **kwargs):  # noqa: ANN001, ANN201 (curl_cffi's signature)
        kwargs["timeout"] = max(self.deadline - time.monotonic(), MIN_REQUEST_SECONDS)
        response = super().request(method, rewritten(url, self.base), *args, **kwargs)
        self.last = Answer(
            response.status_code,
            response.headers.get("content-type") or "",
            response.content[:400].decode("utf-8", "replace"),
            response.headers.get("retry-after"),
        )
        return response


@contextmanager
def yfinance_scope() -> Iterator[None]:
    """yfinance's process-wide state for one fetch (see the module), restored afterwards."""
    import yfinance.base as yf_base
    import yfinance.cache as yf_cache
    from yfinance.config import YfConfig
    from yfinance.data import YfData

    yf_logger = logging.getLogger("yfinance")
    with _ONE_FETCH_AT_A_TIME:
        saved = (
            YfData._instances.pop(YfData, None),  # the next YfData() is a fresh one
            YfConfig.debug.hide_exceptions,
            yf_cache._TzCacheManager._tz_cache,
            yf_cache._CookieCacheManager._Cookie_cache,
            yf_base._tz_info_fetch_ctr,
            yf_logger.level,
        )
        YfConfig.debug.hide_exceptions = False
        yf_cache._TzCacheManager._tz_cache = yf_cache._TzCacheDummy()
        yf_cache._CookieCacheManager._Cookie_cache = yf_cache._CookieCacheDummy()
        yf_base._tz_info_fetch_ctr = 2  # its limit: no quoteSummary fallback for the timezone
        yf_logger.setLevel(logging.CRITICAL)  # its errors are raised and become our one line
        try:
            yield
        finally:
            YfData.cache_get.cache_clear()
            YfData._instances.pop(YfData, None)
            if saved[0] is not None:
                YfData._instances[YfData] = saved[0]
            YfConfig.debug.hide_exceptions = saved[1]
            yf_cache._TzCacheManager._tz_cache = saved[2]
            yf_cache._CookieCacheManager._Cookie_cache = saved[3]
            yf_base._tz_info_fetch_ctr = saved[4]
            yf_logger.setLevel(saved[5])
