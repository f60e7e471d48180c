"""Many pipelines on one tracking store at once: a store created once, and promotions one at a time.

MLflow has no transactions across calls, so two things need a lock:
- A fresh SQLite store: every process that opens it runs MLflow's migrations, and two doing so at once
  crash (`duplicate column name`). `prepare_tracking_store` opens it under an exclusive file lock first.
- Promotion: "read the champion, compare, move the alias" must not interleave, or two registrations
  both see no champion (both `first_version`) and the last to finish wins. `promotion_lock` holds a
  lock made of the registry itself: a registered model `<name>.promotion-lock`, whose creation
  succeeds for exactly one caller on any store (the name is unique), on SQLite and on a tracking server
  alike, across hosts. Its holder deletes it when done; a lock whose process is gone (same host) or
  that is older than `stale_after` seconds is broken by the next caller.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient

from flow_steps.constants import TAG_PROCESS_HOST, TAG_PROCESS_ID, TAG_PROCESS_STARTED
from flow_steps.errors import PipelineError
from flow_steps.interruption import is_alive, this_process

logger = logging.getLogger(__name__)

SQLITE_PREFIX = "sqlite:///"
LOCK_SUFFIX = ".promotion-lock"
TAG_LOCKED_AT = "locked_at"  # seconds since the epoch, when the lock was taken
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


def lock_name(model_name: str) -> str:
    return model_name + LOCK_SUFFIX


def is_stale(tags: dict[str, str], now: float, stale_after: float) -> bool:
    """Whether a promotion lock's holder is gone: its process ended (this host), or the lock is too old."""
    on_this_host = tags.get(TAG_PROCESS_HOST) == this_process().host and TAG_PROCESS_ID in tags
    if on_this_host and not is_alive(int(tags[TAG_PROCESS_ID]), tags.get(TAG_PROCESS_STARTED)):
        return True
    return now - float(tags.get(TAG_LOCKED_AT, now)) > stale_after


@contextmanager
def promotion_lock(
    client: MlflowClient, model_name: str, timeout: float = 900, stale_after: float = 1800
) -> Iterator[None]:
    """Hold `model_name`'s promotion lock while the block runs; wait up to `timeout` seconds for it."""
    name = lock_name(model_name)
    race_point("promotion-lock")
    deadline = time.monotonic() + timeout
    waited = False
    while True:
        tags = {**this_process().tags(), TAG_LOCKED_AT: f"{time.time():.3f}"}
        try:
            client.create_registered_model(name, tags=tags, description=f"Promotion lock of {model_name}")
            break
        except MlflowException as error:
            if error.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
        holder = _lock_tags(client, name)
        if holder is not None and is_stale(holder, time.time(), stale_after):
            logger.warning("Breaking %s: its holder %s is gone", name, _describe(holder))
            _delete(client, name)
            continue
        if time.monotonic() > deadline:
            raise PipelineError(
                f"registered model '{model_name}' is locked by {_describe(holder or {})} for more than "
                f"{timeout:.0f} s; if that process is gone, delete registered model '{name}'"
            )
        if not waited:
            logger.info("Waiting for %s (held by %s)", name, _describe(holder or {}))
            waited = True
        time.sleep(0.2 + random.random() * 0.3)
    try:
        yield
    finally:
        _delete(client, name)


def _lock_tags(client: MlflowClient, name: str) -> dict[str, str] | None:
    try:
        return dict(client.get_registered_model(name).tags)
    except MlflowException as error:
        if error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None  # released meanwhile
        raise


def _delete(client: MlflowClient, name: str) -> None:
    try:
        client.delete_registered_model(name)
    except MlflowException as error:
        if error.error_code != ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            raise


def _describe(tags: dict[str, str]) -> str:
    return f"process {tags.get(TAG_PROCESS_ID, '?')} on {tags.get(TAG_PROCESS_HOST, '?')}"
