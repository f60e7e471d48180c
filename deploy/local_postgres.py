"""A throwaway PostgreSQL cluster on loopback, for the tests and the benchmarks (deploy/local_team.py
starts a team server on it).

The cluster lives in a temporary directory owned by the `postgres` user (PostgreSQL refuses to run as
root), listens on a free port of 127.0.0.1, takes password logins only and is stopped with `pg_ctl stop`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.local_serving import HOST, free_port

DB_USER = "mlflow"
DB_PASSWORD = "db-pw-4f1c9e"  # a throwaway cluster's password (loopback only), for the leak scans too


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
