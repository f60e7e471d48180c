"""The promotion lock's rules: when a holder counts as gone, breaking a stale lock, waiting for a live one."""

from __future__ import annotations

import logging
import time

import pytest

from flow_steps.config.errors import PipelineError
from flow_steps.config.names import TAG_PROCESS_HOST, TAG_PROCESS_ID, TAG_PROCESS_STARTED
from flow_steps.deployment.lock import TAG_LOCKED_AT, is_stale, lock_name, promotion_lock
from flow_steps.runtime.interruption import this_process

NOW = 1_000_000.0
STALE_AFTER = 1800


def holder(started: str | None = None, host: str | None = None, locked_at: float | None = NOW) -> dict:
    """Lock tags of this process, or of a dead one (same pid, another start time), or of another host."""
    me = this_process()
    tags = {**me.tags(), **({TAG_LOCKED_AT: f"{locked_at:.3f}"} if locked_at is not None else {})}
    if started is not None:
        tags[TAG_PROCESS_STARTED] = started
    if host is not None:
        tags[TAG_PROCESS_HOST] = host
    return tags


def test_a_live_holder_on_this_host_is_not_stale_until_the_lock_is_too_old():
    assert not is_stale(holder(), NOW, STALE_AFTER)
    assert not is_stale(holder(), NOW + STALE_AFTER, STALE_AFTER)
    assert is_stale(holder(), NOW + STALE_AFTER + 1, STALE_AFTER)


def test_a_gone_holder_on_this_host_is_stale_at_once():
    # The same pid with another start time: the process that took the lock is gone, its pid reused.
    assert is_stale(holder(started="1"), NOW, STALE_AFTER)


def test_a_holder_on_another_host_is_judged_by_age_only():
    elsewhere = holder(started="1", host="another-host")  # its pid means nothing here
    assert not is_stale(elsewhere, NOW, STALE_AFTER)
    assert is_stale(elsewhere, NOW + STALE_AFTER + 1, STALE_AFTER)


def test_a_lock_with_no_time_or_process_is_never_stale_by_age():
    tags = {TAG_PROCESS_HOST: "another-host", TAG_PROCESS_ID: "1"}
    assert not is_stale(tags, NOW + 10 * STALE_AFTER, STALE_AFTER)


def test_a_stale_lock_is_broken_and_taken(tracking, caplog):
    name = "stale-lock-model"
    tracking.client.create_registered_model(lock_name(name), tags=holder(started="1"))
    with caplog.at_level(logging.WARNING), promotion_lock(tracking.client, name, timeout=5):
        taken = tracking.client.get_registered_model(lock_name(name)).tags
        assert taken[TAG_PROCESS_STARTED] == this_process().tags()[TAG_PROCESS_STARTED]
    assert f"Breaking {lock_name(name)}: its holder process {this_process().pid}" in caplog.text
    assert lock_name(name) not in {model.name for model in tracking.client.search_registered_models()}


def test_a_live_holder_makes_the_next_caller_give_up_in_one_line_after_its_timeout(tracking):
    name, tags = "held-lock-model", holder(locked_at=time.time())  # taken just now, by a live process
    tracking.client.create_registered_model(lock_name(name), tags=tags)
    expected = rf"registered model '{name}' is locked by process {this_process().pid} on .* for more than 1 s"
    with pytest.raises(PipelineError, match=expected), promotion_lock(tracking.client, name, timeout=1):
        pass
    assert tracking.client.get_registered_model(lock_name(name)).tags == tags  # left to its holder
