"""uvicorn's h11 HTTP protocol with TCP_NODELAY on every connection: the team server's `--http`.

`mlflow server --workers N` runs uvicorn's multi-process supervisor, which binds the listening socket
itself without naming the protocol (`proto` 0); asyncio sets TCP_NODELAY only on accepted sockets that
say IPPROTO_TCP, so these connections keep Nagle's algorithm (uvicorn issue #3149, open). uvicorn writes
a response as its headers and then its body: Nagle holds the body until the client acknowledges the
headers, and the client delays that acknowledgement, about 40 ms on Linux. Every request after the
first on a keep-alive connection (MLflow's client keeps one) then waits about 40 ms for nothing.
Measured on 127.0.0.1 (docs/performance.md): a ticker's 164 requests took 6.95 s with 2 workers and
1.46 s with 1 worker, whose socket asyncio makes itself with the protocol named.

deploy/team_server.py selects this class with `--uvicorn-opts "--http nodelay_http:NoDelayH11Protocol"`
(uvicorn imports an `--http` value that is not one of its names), this folder on PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on a TCP transport's socket (a Unix socket is left alone)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayH11Protocol(H11Protocol):
    """uvicorn's h11 protocol; each connection's socket sends without waiting (TCP_NODELAY)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)
