"""Promotion one registration at a time: a lock made of the registry itself.

"Read the champion, compare, move the alias" must not interleave, or two registrations both see no
champion (both `first_version`) and the last to finish wins. `promotion_lock` holds a registered model
`<name>.promotion-lock`, whose creation succeeds for exactly one caller on any store (the name is
unique), on SQLite and on a tracking server alike, across hosts. Its holder deletes it when done; a
lock whose process is gone (same host) or that is older than `stale_after` seconds is broken by the
next caller.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient

from flow_steps.config.errors import PipelineError
from flow_steps.config.names import TAG_PROCESS_HOST, TAG_PROCESS_ID, TAG_PROCESS_STARTED
from flow_steps.runtime.interruption import is_alive, this_process

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".promotion-lock"
TAG_LOCKED_AT = "locked_at"  # seconds since the epoch, when the lock was taken


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
