"""The team server's HTTP protocol sends without Nagle's wait, and its command line and environment use it.

uvicorn's multi-worker supervisor binds its listening socket as `socket.socket(AF_INET)` (protocol 0);
the test binds one the same way and serves a real request through uvicorn's h11 protocol and ours.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
from pathlib import Path

import pytest

from deploy import nodelay_http, team_server

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


async def _hello(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})


def _serve_one_request(protocol_class) -> tuple[int, bytes]:
    """TCP_NODELAY of the server's side of a connection accepted on a socket bound as uvicorn's
    supervisor binds it, and the response to one GET served through `protocol_class`."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    config = Config(_hello, http=protocol_class, log_level="warning", lifespan="off")
    config.load()
    state = ServerState()
    made = []

    def factory():
        protocol = protocol_class(config=config, server_state=state, app_state={})
        made.append(protocol)
        return protocol

    async def exchange() -> tuple[int, bytes]:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # protocol 0, as uvicorn's bind_socket
        listener.bind(("127.0.0.1", 0))
        server = await asyncio.get_running_loop().create_server(factory, sock=listener)
        try:
            reader, writer = await asyncio.open_connection(*listener.getsockname())
            writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.readuntil(b"hello"), 10)
            accepted = made[0].transport.get_extra_info("socket")
            nodelay = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            writer.close()
            return nodelay, answer
        finally:
            server.close()

    return asyncio.run(exchange())


@pytest.mark.slow  # listens on a loopback socket
@pytest.mark.timeout(60)
def test_connections_accepted_like_uvicorns_workers_send_without_nagles_wait():
    from uvicorn.protocols.http.h11_impl import H11Protocol

    nodelay, answer = _serve_one_request(nodelay_http.NoDelayH11Protocol)
    assert nodelay != 0
    assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"hello")
    # uvicorn's own protocol on the same kind of socket keeps Nagle on: what the class is for.
    assert _serve_one_request(H11Protocol)[0] == 0


def test_the_server_runs_the_nodelay_protocol_importable_and_tls_options_kept(monkeypatch):
    arguments = argparse.Namespace(
        database_uri="postgresql+psycopg://mlflow@db:5432/mlflow",
        artifacts_destination="/srv/artifacts",
        host="0.0.0.0",
        port=5000,
        workers=4,
        tls_certfile="/etc/tls/server cert.pem",
        tls_keyfile="/etc/tls/key.pem",
    )
    command = team_server.server_command(arguments)
    options = command[command.index("--uvicorn-opts") + 1]
    assert options == (
        "--http nodelay_http:NoDelayH11Protocol "
        "--ssl-certfile '/etc/tls/server cert.pem' --ssl-keyfile /etc/tls/key.pem"
    )
    monkeypatch.setenv("PYTHONPATH", "/opt/site")
    monkeypatch.setenv(team_server.ADMIN_PASSWORD_VARIABLE, "not-for-the-server")
    env = team_server.server_env("/tmp/auth.ini")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(DEPLOY), "/opt/site"]
    assert team_server.ADMIN_PASSWORD_VARIABLE not in env
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/tmp/auth.ini"


def test_the_servers_database_sessions_plan_every_statement_with_its_values(monkeypatch):
    monkeypatch.delenv("PGOPTIONS", raising=False)
    assert team_server.server_env("/tmp/auth.ini")["PGOPTIONS"] == "-c plan_cache_mode=force_custom_plan"
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=5min")  # an operator's own options are kept
    assert team_server.server_env("/tmp/auth.ini")["PGOPTIONS"] == (
        "-c statement_timeout=5min -c plan_cache_mode=force_custom_plan"
    )
