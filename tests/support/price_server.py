"""A real HTTP server on 127.0.0.1 standing in for the remote price sources.

It speaks the Quandl v3 JSON API the `quandl` package calls
(`GET /api/v3/datasets/{DB}/{CODE}/data` -> `{"dataset_data": {"column_names": [...], "data": [...]}}`),
serves CSV files under `/files/<name>`, and answers scripted error statuses (or hangs) on request.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pandas as pd

HANG = -1  # a scripted "status" that makes the server wait instead of answering

# Quandl error codes by status, as the `quandl` package maps their letters to exception classes.
QUANDL_ERROR_CODES = {
    401: "QEAx01",
    403: "QEPx01",
    404: "QECx02",
    429: "QELx01",
    500: "QEMx01",
    503: "QEXx01",
}


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class PriceServer:
    """Datasets by `DB/CODE`, files by name, an optional required API key, scripted answers by path."""

    datasets: dict[str, pd.DataFrame] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    retired: set[str] = field(default_factory=set)
    required_key: str | None = None
    hang_seconds: float = 5.0
    scripted: dict[str, list[int]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/v3"

    def dataset_path(self, dataset: str) -> str:
        return f"/api/v3/datasets/{dataset}/data"

    def start(self) -> PriceServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def paths_requested(self, path: str) -> int:
        return sum(request.path == path for request in self.requests)


def _handler_for(server: PriceServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            server.requests.append(Request(parsed.path, parse_qs(parsed.query), dict(self.headers.items())))
            script = server.scripted.get(parsed.path)
            if script:
                status = script.pop(0)
                if status == HANG:
                    time.sleep(server.hang_seconds)
                    return self._send(504, b"too late", "text/plain")
                return self._error(parsed.path, status, "scripted failure")
            if parsed.path.startswith("/api/v3/datasets/"):
                return self._dataset(parsed.path, parse_qs(parsed.query))
            if parsed.path.startswith("/files/"):
                name = parsed.path.removeprefix("/files/")
                if name in server.files:
                    return self._send(200, server.files[name], "text/csv")
            return self._send(404, b"<html><body><h1>Not Found</h1></body></html>", "text/html")

        def _dataset(self, path: str, query: dict[str, list[str]]) -> None:
            parts = path.strip("/").split("/")  # api v3 datasets DB CODE data
            if len(parts) != 6 or parts[-1] != "data":
                return self._error(path, 404, "unknown endpoint")
            given_key = self.headers.get("X-Api-Token") or query.get("api_key", [None])[0]
            if server.required_key and given_key != server.required_key:
                # Echo the key back, as careless servers do: the client must not repeat it.
                return self._error(path, 401, f"Incorrect API key: {given_key}")
            dataset = f"{parts[3]}/{parts[4]}"
            if dataset in server.retired:
                return self._error(path, 410, "This dataset has been retired.")
            if dataset not in server.datasets:
                return self._error(path, 404, "You have submitted an incorrect Quandl code.")
            frame = server.datasets[dataset]
            if query.get("order") == ["asc"]:
                frame = frame.sort_values(frame.columns[0])
            body = {
                "dataset_data": {
                    "column_names": list(frame.columns),
                    "data": frame.astype(object).where(frame.notna(), None).values.tolist(),
                }
            }
            self._send(200, json.dumps(body).encode(), "application/json")

        def _error(self, path: str, status: int, message: str) -> None:
            if path.startswith("/api/"):
                code = QUANDL_ERROR_CODES.get(status, "QEXx99")
                body = json.dumps({"quandl_error": {"code": code, "message": message}}).encode()
                return self._send(status, body, "application/json")
            return self._send(status, f"<html><body>{status}: {message}</body></html>".encode(), "text/html")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
