"""A throwaway team tracking server for tests: a PostgreSQL cluster and deploy/team_server.py on loopback.

The cluster lives in a temporary directory owned by the `postgres` user (PostgreSQL refuses to run as
root), listens on a free port of 127.0.0.1 and is stopped with `pg_ctl stop`; the tracking server runs
in its own process group and is stopped by signalling that group.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from flow_steps.runtime.local_server import HOST, free_port, stop_process_group
from tests.support.helpers import clean_env

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DB_USER = "mlflow"
DB_PASSWORD = "db-pw-4f1c9e"  # a throwaway cluster's password, for the leak scans too
ADMIN = ("admin", "admin-pw-7d2a61-c4e9")


def postgres_bin(name: str) -> str:
    """A PostgreSQL server program (Debian keeps them off PATH, in /usr/lib/postgresql/<version>/bin)."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]), None
    )
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed: apt-get install -y postgresql")
    return found


def _as_postgres(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a PostgreSQL server command as the unprivileged `postgres` user when we are root."""
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")

        def drop_privileges() -> None:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

        return subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=drop_privileges,
            cwd="/tmp",
        )
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True)


@dataclass
class PostgresCluster:
    """A PostgreSQL cluster in a temporary directory, on a free port of 127.0.0.1, password logins only."""

    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pg-cluster-")))
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def init(self) -> PostgresCluster:
        (self.folder / "password").write_text(DB_PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            shutil.chown(self.folder / "password", "postgres", "postgres")
        _as_postgres(
            [
                postgres_bin("initdb"),
                "-D",
                str(self.data),
                "-U",
                DB_USER,
                f"--pwfile={self.folder / 'password'}",
            ]
            + [
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--no-instructions",
            ]
        )
        (self.folder / "password").unlink()
        return self

    def start(self) -> PostgresCluster:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses={HOST}"
        command = [
            postgres_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "log"),
            "-o",
            options,
        ]
        _as_postgres([*command, "-w", "-t", "60", "start"])
        self._wait_ready()
        return self

    def _wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [postgres_bin("pg_isready"), "-h", HOST, "-p", str(self.port)],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.3)
        raise RuntimeError(f"PostgreSQL did not start:\n{(self.folder / 'log').read_text()[-2000:]}")

    def create_database(self, name: str) -> None:
        env = {**os.environ, "PGPASSWORD": DB_PASSWORD}
        command = [postgres_bin("createdb"), "-h", HOST, "-p", str(self.port), "-U", DB_USER, name]
        subprocess.run(command, env=env, capture_output=True, text=True, check=True)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            _as_postgres(
                [postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop"]
            )

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def uri(self, database: str) -> str:
        return f"postgresql+psycopg://{DB_USER}@{HOST}:{self.port}/{database}"


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
        env = clean_env()
        env.update(
            {
                "TMPDIR": str(self.private_tmp),
                "PGPASSWORD": DB_PASSWORD,
                "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
                "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret-key-0123456789",
            }
        )
        command = [sys.executable, str(PROJECT_ROOT / "deploy" / "team_server.py")]
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
