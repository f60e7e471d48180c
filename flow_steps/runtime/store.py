"""The tracking store, ready before any run starts: a fresh SQLite store's tables created once.

Every process that opens a fresh SQLite store runs MLflow's migrations, and two doing so at once crash
(`duplicate column name`). `prepare_tracking_store` opens it under an exclusive file lock first.
"""

from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

SQLITE_PREFIX = "sqlite:///"


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
    with path.with_name(path.name + ".lock").open("a") as lock:
        if fcntl:
            fcntl.flock(lock, fcntl.LOCK_EX)
        client = MlflowClient(tracking_uri)
        client.search_experiments(max_results=1)  # the tracking tables
        client.search_registered_models(max_results=1)  # the registry's, in the same database
