"""A real HTTP server on 127.0.0.1 standing in for Tiingo's end-of-day API.

`GET /tiingo/daily/<TICKER>/prices?startDate=...&endDate=...&format=json|csv` with the header
`Authorization: Token <key>` answers the ticker's sessions between the dates, as Tiingo documents them
(https://api.tiingo.com/documentation/end-of-day): JSON objects with `date` ("2013-03-01T00:00:00.000Z"),
`close, high, low, open, volume, adjClose, adjHigh, adjLow, adjOpen, adjVolume, divCash, splitFactor`,
or the same as CSV. A missing token gets 403 `{"detail": "Please supply a token"}`, a wrong one 401
`{"detail": "Invalid token."}`, an unknown ticker 404 `{"detail": "Error: Ticker 'XYZ' not found"}`.
Answers can be scripted per request (`script`): a status (with Retry-After), an HTML page, a text, a hang.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pandas as pd

SAMPLE = Path(__file__).resolve().parents[2] / "flow_steps" / "data" / "sample_data" / "WIKI-MSFT.csv"
FIELDS = ["close", "high", "low", "open", "volume", "adjClose", "adjHigh", "adjLow", "adjOpen", "adjVolume"]
FIELDS += ["divCash", "splitFactor"]


def tiingo_frame(path: Path = SAMPLE) -> pd.DataFrame:
    """A Tiingo series derived from a real one (`Date, Open, High, Low, Close, Volume, Adj Close`): the
    adjustment factor adjClose / close jumps on a split (Microsoft's 2:1 on 2003-02-18: splitFactor 2) and
    moves a little on an ex-dividend date (divCash = the previous close times the factor's change)."""
    raw = pd.read_csv(path)
    factor = raw["Adj Close"] / raw["Close"]
    step = (factor / factor.shift(1)).fillna(1.0)
    split = step.where(step > 1.5, 1.0).round()
    dividend = (raw["Close"].shift(1) * (1 - factor.shift(1) / factor)).where((step > 1.0001) & (step < 1.5))
    return pd.DataFrame(
        {
            "date": raw["Date"],
            "close": raw["Close"],
            "high": raw["High"],
            "low": raw["Low"],
            "open": raw["Open"],
            "volume": raw["Volume"],
            "adjClose": raw["Adj Close"],
            "adjHigh": raw["High"] * factor,
            "adjLow": raw["Low"] * factor,
            "adjOpen": raw["Open"] * factor,
            "adjVolume": (raw["Volume"] / factor).round(),
            "divCash": dividend.fillna(0.0).round(4),
            "splitFactor": split,
        }
    )


@dataclass
class Scripted:
    """One scripted answer: a status and body, with Retry-After; or a hang of `hang_seconds`."""

    status: int = 200
    body: str = ""
    content_type: str = "application/json"
    retry_after: str | None = None
    hang_seconds: float = 0.0


def rate_limited(retry_after: str | None = "1") -> Scripted:
    return Scripted(
        429,
        json.dumps({"detail": "Error: You have run over your hourly request allocation."}),
        retry_after=retry_after,
    )


OVER_THE_LIMIT = (
    429,
    json.dumps({"detail": "Error: You have run over your hourly request allocation."}),
    "application/json",
    "60",
)
HTML_PAGE = Scripted(200, "<!DOCTYPE html><html><body>Please log in</body></html>", "text/html")
EMPTY = Scripted(200, "[]")


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    at: float = 0.0  # time.monotonic() when it arrived
    status: int = 0  # what it was answered


@dataclass
class TiingoServer:
    """Frames of sessions by ticker (columns `date` and FIELDS), the token it wants, scripted answers."""

    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    token: str = "tiingo-test-token"
    script: list[Scripted] = field(default_factory=list)  # answered first, one a request
    repeat: Scripted | None = None  # answered to every request once the script is used up
    requests: list[Request] = field(default_factory=list)
    # A rate limit as Tiingo enforces one: prices asked sooner than this after the last answered get 429.
    min_seconds_between: float = 0.0

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> TiingoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> TiingoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def next_scripted(self) -> Scripted | None:
        return self.script.pop(0) if self.script else self.repeat


def _handler_for(server: TiingoServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            query = parse_qs(parsed.query)
            self.record = Request(parsed.path, query, dict(self.headers.items()), time.monotonic())
            with server.lock:  # one request at a time is checked against the limit
                answered = [request.at for request in server.requests if request.status == 200]
                server.requests.append(self.record)
                if answered and self.record.at - max(answered) < server.min_seconds_between:
                    return self._send(*OVER_THE_LIMIT)
                self.record.status = 200  # until answered otherwise
            scripted = server.next_scripted()
            if scripted is not None:
                if scripted.hang_seconds:
                    time.sleep(scripted.hang_seconds)
                return self._send(scripted.status, scripted.body, scripted.content_type, scripted.retry_after)
            parts = parsed.path.strip("/").split("/")  # tiingo daily TICKER prices
            if len(parts) != 4 or parts[:2] != ["tiingo", "daily"] or parts[3] != "prices":
                return self._detail(404, "Not found.")
            authorization = self.headers.get("Authorization", "")
            if not authorization:
                return self._detail(403, "Please supply a token")
            if authorization != f"Token {server.token}":
                return self._detail(401, "Invalid token.")
            ticker = unquote(parts[2]).upper()
            if ticker not in server.frames:
                return self._detail(404, f"Error: Ticker '{unquote(parts[2])}' not found")
            frame = server.frames[ticker]
            start, end = query.get("startDate", ["0000"])[0], query.get("endDate", ["9999"])[0]
            frame = frame[(frame["date"] >= start) & (frame["date"] <= end)]
            if query.get("format") == ["csv"]:
                return self._send(200, frame.to_csv(index=False), "text/csv")
            records = frame.assign(date=frame["date"] + "T00:00:00.000Z").to_dict(orient="records")
            self._send(200, json.dumps(records), "application/json")

        def _detail(self, status: int, detail: str) -> None:
            self._send(status, json.dumps({"detail": detail}), "application/json")

        def _send(self, status: int, body: str, content_type: str, retry_after: str | None = None) -> None:
            self.record.status = status
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            self.end_headers()
            self.wfile.write(data)

    return Handler
