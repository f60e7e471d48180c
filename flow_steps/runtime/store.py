"""The tracking store, ready before any run starts: a fresh SQLite store's tables created once.

Every process that opens a fresh SQLite store runs MLflow's migrations, and two doing so at once crash
(`duplicate column name`). `prepare_tracking_store` opens it under an exclusive file lock first. Tests
force the races this module and deployment/lock.py guard against with `race_point` and `race_hold`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from flow_steps.config.errors import PipelineError

SQLITE_PREFIX = "sqlite:///"
# Tests only: "<folder>:<parties>:<hold seconds>" makes racers meet before each lock and hold the
# promotion lock's critical section open, so that a race test forces the interleaving it is about.
RACE_VARIABLE = "FLOW_STEPS_TEST_RACE"


def race_point(name: str, timeout: float = 120) -> None:
    """Tests only (no-op unless RACE_VARIABLE is set): wait until every party has reached `name`.

    Each process adds a file named after `name` and its pid to the folder and waits until there are
    `parties` of them, so that they all leave this point together.
    """
    setting = os.environ.get(RACE_VARIABLE)
    if not setting:
        return
    folder, parties, _ = setting.rsplit(":", 2)
    (Path(folder) / f"{name}.{os.getpid()}").touch()
    deadline = time.monotonic() + timeout
    while len(list(Path(folder).glob(f"{name}.*"))) < int(parties):
        if time.monotonic() > deadline:
            raise PipelineError(f"{RACE_VARIABLE}: not every party reached {name} within {timeout:.0f} s")
        time.sleep(0.05)


def race_hold() -> None:
    """Tests only (no-op unless RACE_VARIABLE is set): stay a while inside a critical section."""
    if setting := os.environ.get(RACE_VARIABLE):
        time.sleep(float(setting.rsplit(":", 1)[1]))


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (`sqlite:////abs/path` is absolute), else None."""
    if not tracking_uri.startswith(SQLITE_PREFIX):
        return None
    return Path(tracking_uri.removeprefix(SQLITE_PREFIX).split("?", 1)[0])


def prepare_tracking_store(tracking_uri: str) -> None:
    """Create (or upgrade) a SQLite store's tables under an exclusive file lock, before any run starts.

    The lock file sits beside the database (`mlflow.db.lock`). Other stores need nothing: a tracking
    server creates its tables once, at its own start.
    """
    path = sqlite_path(tracking_uri)
    if path is None:
        return
    try:
        import fcntl
    except ImportError:  # not on POSIX: open it unguarded, as MLflow does
        fcntl = None
    path.parent.mkdir(parents=True, exist_ok=True)
    race_point("prepare-store")
    with path.with_name(path.name + ".lock").open("a") as lock:
        if fcntl:
            fcntl.flock(lock, fcntl.LOCK_EX)
        client = MlflowClient(tracking_uri)
        client.search_experiments(max_results=1)  # the tracking tables
        client.search_registered_models(max_results=1)  # the registry's, in the same database
