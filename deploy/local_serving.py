"""Run `mlflow models serve` on loopback and talk to it, and the helpers every loopback launcher here shares
(a free port, a process group stopped whole): used by the tests and the benchmarks."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from flow_steps.config.names import HORIZON_PARAM, PRICE_COLUMN

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"


def invocation_payload(closes: Sequence[float], horizon: int | None = None) -> dict:
    """The JSON body of POST /invocations: closes as `dataframe_split`, `horizon` as a param."""
    payload: dict = {"dataframe_split": {"columns": [PRICE_COLUMN], "data": [[float(c)] for c in closes]}}
    if horizon is not None:
        payload["params"] = {HORIZON_PARAM: horizon}
    return payload


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclass
class ServedModel:
    """A running scoring server: its base URL and its log file."""

    url: str
    log_path: Path

    def invoke(self, payload: dict, timeout: float = 30) -> requests.Response:
        return requests.post(f"{self.url}/invocations", json=payload, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def served_model(
    model_uri: str, env: dict[str, str] | None = None, port: int | None = None, start_timeout: float = 180
) -> Iterator[ServedModel]:
    """`mlflow models serve -m MODEL_URI --env-manager local` on 127.0.0.1, stopped on exit."""
    port = port or free_port()
    mlflow_cli = shutil.which("mlflow", path=os.path.dirname(sys.executable)) or "mlflow"
    command = [mlflow_cli, "models", "serve", "-m", model_uri, "--env-manager", "local"]
    command += ["--host", HOST, "-p", str(port), "--workers", "1"]
    with tempfile.TemporaryDirectory() as folder:
        log_path = Path(folder) / "serve.log"
        with log_path.open("w") as log_file:
            process = subprocess.Popen(
                command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
            server = ServedModel(f"http://{HOST}:{port}", log_path)
            try:
                _wait_until_ready(server, process, start_timeout)
                yield server
            finally:
                _stop(process)


def _wait_until_ready(server: ServedModel, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = server.log()[-3000:]
            raise RuntimeError(f"mlflow models serve exited with {process.returncode}:\n{tail}")
        try:
            if requests.get(f"{server.url}/ping", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"mlflow models serve not ready after {timeout:.0f} s:\n{server.log()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and its workers (they share its process group)."""
    stop_process_group(process)


def stop_process_group(process: subprocess.Popen, grace_seconds: float = 20) -> None:
    """SIGTERM the process group led by `process` and wait until every member has exited (a server's
    workers can outlive their leader and keep its port); SIGKILL whatever is left after the grace."""
    for signal_number, seconds in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, signal_number)
        except ProcessLookupError:
            break
        if _group_exited(process, seconds):
            break
    process.wait()


def _group_exited(process: subprocess.Popen, seconds: float) -> bool:
    """Wait up to `seconds` for every process of `process`'s group to exit (the leader reaped)."""
    deadline = time.monotonic() + seconds
    while True:
        process.poll()  # reap the leader: until then the group exists
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
