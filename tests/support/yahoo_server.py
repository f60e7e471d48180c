"""A real HTTP server on 127.0.0.1 standing in for Yahoo Finance, as yfinance 1.7.0 calls it.

The `yahoo` source sends every Yahoo host to YAHOO_API_BASE, so one server answers all of them by path:
`/` (fc.yahoo.com: a cookie), `/v1/test/getcrumb` (a crumb), `/consent` (guce.yahoo.com: no consent form,
so yfinance falls back to the cookie), and `/v8/finance/chart/<SYMBOL>` (the prices) in Yahoo's JSON
shape: `{"chart": {"result": [{"meta": {...}, "timestamp": [...], "events": {"dividends": {...},
"splits": {...}}, "indicators": {"quote": [{"open", "high", "low", "close", "volume"}], "adjclose":
[{"adjclose"}]}}], "error": null}}`, one timestamp per session at its 09:30 New York open, the rows
between `period1` and `period2` (or the last one for `range=1d`). An unknown symbol is answered 404 with
Yahoo's error object. Chart requests can be scripted: 429, an HTML page with status 200, an empty body,
a result without prices, or a hang.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pandas as pd

RATE_LIMITED, HTML_PAGE, EMPTY_BODY, NO_PRICES, HANG = "429", "html", "empty", "no prices", "hang"
CHART = "/v8/finance/chart/"
CRUMB = "loopbackCrumb1"
NEW_YORK = "America/New_York"
UNKNOWN_SYMBOL = {"code": "Not Found", "description": "No data found, symbol may be delisted"}
CONSENT_PAGE = (
    b"<!DOCTYPE html><html lang='en'><head><title>Yahoo is part of the Yahoo family of brands</title>"
    b"</head><body><p>Before you continue to Yahoo Finance: we use cookies.</p></body></html>"
)


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]


@dataclass
class YahooServer:
    """Daily prices by symbol (Date, Open, High, Low, Close, Adj Close, Volume; oldest first), scripted
    answers for the chart requests (taken one per request, then `always` if set, else the prices)."""

    series: dict[str, pd.DataFrame] = field(default_factory=dict)
    scripted: list[str] = field(default_factory=list)
    always: str | None = None
    hang_seconds: float = 5.0
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> YahooServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def chart_requests(self, symbol: str) -> list[Request]:
        return [request for request in self.requests if request.path == CHART + symbol]


def session_times(dates: pd.Series) -> list[int]:
    """Epoch seconds of each session's 09:30 open in New York, as Yahoo stamps daily bars."""
    opens = pd.to_datetime(dates) + pd.Timedelta(hours=9, minutes=30)
    return [int(stamp.timestamp()) for stamp in opens.dt.tz_localize(NEW_YORK)]


def events(frame: pd.DataFrame, stamps: list[int]) -> dict[str, dict[str, dict]]:
    """Dividends and splits, read back from the adjusted close: where Adj Close / Close steps up, the
    step is a split (a whole ratio) or a dividend of Close(day before) * (1 - 1/step)."""
    factor = (frame["Adj Close"] / frame["Close"]).to_numpy()
    close = frame["Close"].to_numpy()
    found: dict[str, dict[str, dict]] = {"dividends": {}, "splits": {}}
    for row in range(1, len(frame)):
        step = factor[row] / factor[row - 1]
        stamp = stamps[row]
        if step > 1.5:
            ratio = round(step)
            found["splits"][str(stamp)] = {
                "date": stamp,
                "numerator": float(ratio),
                "denominator": 1.0,
                "splitRatio": f"{ratio}:1",
            }
        elif step > 1.0005:
            amount = round(float(close[row - 1] * (1 - 1 / step)), 4)
            found["dividends"][str(stamp)] = {"amount": amount, "date": stamp}
    return found


def meta(symbol: str, frame: pd.DataFrame, stamps: list[int]) -> dict:
    """The chart answer's `meta`, with the fields Yahoo sends for a NYSE equity."""
    last_close = float(frame["Close"].iloc[-1]) if len(frame) else None

    def period(start: int, end: int) -> dict:
        return {"timezone": "EST", "start": start, "end": end, "gmtoffset": -18000}

    last_open = stamps[-1] if stamps else 0
    return {
        "currency": "USD",
        "symbol": symbol,
        "exchangeName": "NYQ",
        "fullExchangeName": "NYSE",
        "instrumentType": "EQUITY",
        "firstTradeDate": stamps[0] if stamps else None,
        "regularMarketTime": last_open + 23400,
        "hasPrePostMarketData": True,
        "gmtoffset": -18000,
        "timezone": "EST",
        "exchangeTimezoneName": NEW_YORK,
        "regularMarketPrice": last_close,
        "chartPreviousClose": last_close,
        "priceHint": 2,
        "currentTradingPeriod": {
            "pre": period(last_open - 19800, last_open),
            "regular": period(last_open, last_open + 23400),
            "post": period(last_open + 23400, last_open + 37800),
        },
        "dataGranularity": "1d",
        "range": "",
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }


def chart(symbol: str, frame: pd.DataFrame, query: dict[str, list[str]]) -> dict:
    """The chart answer for the rows the query asks for (all of `frame` for what it covers)."""
    stamps = session_times(frame["Date"])
    found = events(frame, stamps)
    if query.get("range") == ["1d"]:
        keep = [len(frame) - 1] if len(frame) else []
    else:
        first = int(query.get("period1", ["0"])[0])
        end = int(query.get("period2", [str(2**40)])[0])
        keep = [row for row, stamp in enumerate(stamps) if first <= stamp < end]
    rows = frame.iloc[keep]
    kept = [stamps[row] for row in keep]
    result: dict = {"meta": meta(symbol, frame, stamps)}
    if not kept:
        result["indicators"] = {"quote": [{}], "adjclose": [{}]}
        return {"chart": {"result": [result], "error": None}}
    within = {
        kind: {key: event for key, event in items.items() if kept[0] <= event["date"] <= kept[-1]}
        for kind, items in found.items()
    }
    result["timestamp"] = kept
    result["events"] = {kind: items for kind, items in within.items() if items}
    result["indicators"] = {
        "quote": [
            {
                "open": rows["Open"].tolist(),
                "high": rows["High"].tolist(),
                "low": rows["Low"].tolist(),
                "close": rows["Close"].tolist(),
                "volume": rows["Volume"].astype(int).tolist(),
            }
        ],
        "adjclose": [{"adjclose": rows["Adj Close"].tolist()}],
    }
    return {"chart": {"result": [result], "error": None}}


def _handler_for(server: YahooServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_POST(self) -> None:
            self._send(404, b"<html><body>Not Found</body></html>", "text/html")

        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            query = parse_qs(parsed.query)
            server.requests.append(Request(parsed.path, query))
            if parsed.path == "/":  # fc.yahoo.com: Yahoo answers 404 and sets the cookie
                return self._send(404, b"", "text/html", cookie="A3=d=loopback&S=1; Path=/")
            if parsed.path == "/v1/test/getcrumb":
                return self._send(200, CRUMB.encode(), "text/plain;charset=utf-8")
            if parsed.path.startswith(CHART):
                return self._chart(parsed.path.removeprefix(CHART), query)
            return self._send(404, b"<html><body>Not Found</body></html>", "text/html")

        def _chart(self, symbol: str, query: dict[str, list[str]]) -> None:
            answer = server.scripted.pop(0) if server.scripted else server.always
            if answer == RATE_LIMITED:
                return self._send(429, b"Too Many Requests\r\n", "text/html", retry_after="0")
            if answer == HTML_PAGE:
                return self._send(200, CONSENT_PAGE, "text/html; charset=utf-8")
            if answer == EMPTY_BODY:
                return self._send(200, b"", "application/json")
            if answer == HANG:
                time.sleep(server.hang_seconds)
                return self._send(504, b"too late", "text/plain")
            if symbol not in server.series:
                body = {"chart": {"result": None, "error": UNKNOWN_SYMBOL}}
                return self._send(404, json.dumps(body).encode(), "application/json;charset=utf-8")
            frame = server.series[symbol]
            if answer == NO_PRICES:
                frame = frame.iloc[:0]
            body = json.dumps(chart(symbol, frame, query)).encode()
            self._send(200, body, "application/json;charset=utf-8")

        def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if "cookie" in headers:
                self.send_header("Set-Cookie", headers["cookie"])
            if "retry_after" in headers:
                self.send_header("Retry-After", headers["retry_after"])
            self.end_headers()
            self.wfile.write(body)

    return Handler
