"""A throwaway team tracking server on loopback, for the tests and the benchmarks: deploy/team_server.py
started on a PostgreSQL cluster of deploy/local_postgres.py.

The server runs in its own process group and is stopped by signalling that group. Its admin login and
the cluster's password are throwaway ones (ADMIN, DB_PASSWORD), known to the tests' leak scans.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from deploy.local_postgres import DB_PASSWORD, PostgresCluster
from deploy.local_serving import HOST, free_port, stop_process_group

TEAM_SERVER = Path(__file__).resolve().with_name("team_server.py")
ADMIN = ("admin", "admin-pw-7d2a61-c4e9")


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with openssl as docs/team-server.md shows."""
    certificate, key = folder / "server.crt", folder / "server.key"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
    command += ["-keyout", str(key), "-out", str(certificate), "-subj", f"/CN={HOST}"]
    command += ["-addext", f"subjectAltName=IP:{HOST}"]
    subprocess.run(command, capture_output=True, text=True, check=True)
    return certificate, key


@dataclass
class TeamServer:
    """deploy/team_server.py on a free port of 127.0.0.1, backed by `cluster`; HTTPS only when given a
    certificate and its key (`tls`)."""

    cluster: PostgresCluster
    artifacts: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    tls: tuple[Path, Path] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"

    @property
    def verify(self) -> str | bool:
        """What a client verifies the server's certificate with (`requests`' verify)."""
        return str(self.tls[0]) if self.tls else True

    @property
    def private_tmp(self) -> Path:
        """The server's TMPDIR: where deploy/team_server.py writes its basic-auth ini file."""
        return self.artifacts.parent / "tmp"

    def auth_files(self) -> list[Path]:
        return sorted(self.private_tmp.glob("mlflow-auth-*.ini"))

    def start(self, *options: str, timeout: float = 120) -> TeamServer:
        """Start deploy/team_server.py with `options` added to its command line."""
        self.private_tmp.mkdir(exist_ok=True)
        # This process's environment but its MLflow client settings (a server is no client of itself).
        env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
        env.update(
            {
                "TMPDIR": str(self.private_tmp),
                "PGPASSWORD": DB_PASSWORD,
                "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
                "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key-0123456789",
            }
        )
        command = [sys.executable, str(TEAM_SERVER)]
        command += [
            "--database-uri",
            self.cluster.uri("mlflow"),
            "--artifacts-destination",
            str(self.artifacts),
        ]
        command += ["--port", str(self.port), "--workers", "1", *options]
        if self.tls:
            command += ["--tls-certfile", str(self.tls[0]), "--tls-keyfile", str(self.tls[1])]
        log = (self.artifacts.parent / f"server-{self.port}.log").open("a")
        self.process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the tracking server exited with {self.process.returncode}: {self.log()[-3000:]}"
                )
            try:
                if requests.get(f"{self.url}/health", timeout=5, verify=self.verify).ok:
                    return self
            except requests.RequestException:  # not listening yet, or busy migrating its database
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the tracking server did not answer within {timeout:.0f} s: {self.log()[-3000:]}")

    def log(self) -> str:
        return (self.artifacts.parent / f"server-{self.port}.log").read_text(errors="replace")

    def stop(self) -> None:
        """Stop the server and its workers (one process group): its port is free on return."""
        if self.process is not None:
            stop_process_group(self.process)
        self.process = None

    def kill(self) -> None:
        """SIGKILL the server and its workers at once, as a crash or a node loss would; reaped on return."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.stop()

    def api(self, method: str, path: str, auth: tuple[str, str] = ADMIN, version: str = "2.0", **payload):
        """Call the server's REST API (as the admin by default)."""
        call = requests.get if method == "GET" else getattr(requests, method.lower())
        key = "params" if method == "GET" else "json"
        url = f"{self.url}/api/{version}/mlflow/{path}"
        return call(url, auth=auth, timeout=30, verify=self.verify, **{key: payload})

    def create_user(self, username: str, password: str) -> None:
        answer = self.api("POST", "users/create", username=username, password=password)
        if not answer.ok:
            raise RuntimeError(f"creating user {username}: {answer.status_code} {answer.text[:300]}")

    def grant(self, resource_type: str, resource_id: str, username: str, permission: str) -> None:
        """resource_type 'experiment' (resource_id: its id) or 'registered_model' (its name)."""
        answer = self.api(
            "POST",
            "users/permissions/grant",
            version="3.0",
            username=username,
            resource_type=resource_type,
            resource_id=resource_id,
            permission=permission,
        )
        if not answer.ok:
            raise RuntimeError(
                f"granting {permission} to {username}: {answer.status_code} {answer.text[:300]}"
            )
