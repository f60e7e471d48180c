"""A fresh team server for the history tests (deploy/history.py, deploy/indexes.py, deploy/retention.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deploy.local_postgres import PostgresCluster
from deploy.local_team import ADMIN, TeamServer


@contextmanager
def started_team(*options: str) -> Iterator[TeamServer]:
    """A cluster and deploy/team_server.py on it (with `options`), stopped and removed at the end, also on
    failure."""
    folder = Path(tempfile.mkdtemp(prefix="history-team-"))
    (folder / "artifacts").mkdir()
    cluster = PostgresCluster()
    server = TeamServer(cluster, folder / "artifacts")
    try:
        cluster.init().start()
        cluster.create_database("mlflow")
        cluster.create_database("mlflow_auth")
        server.start(*options)
        yield server
    finally:
        server.stop()
        cluster.remove()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def admin(monkeypatch) -> Iterator[None]:
    """This process's MLflow client logs in as the server's admin."""
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    yield
