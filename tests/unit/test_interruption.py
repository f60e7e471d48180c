"""Which runs belong to dead processes: the pure rules behind closing runs left RUNNING."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow.entities import Run, RunData, RunInfo, RunTag

from flow_steps.config.names import TAG_PROCESS_HOST, TAG_PROCESS_ID, TAG_PROCESS_STARTED
from flow_steps.runtime.interruption import (
    Interrupted,
    interruptions_held,
    is_alive,
    is_zombie,
    orphaned,
    process_start_ticks,
    raise_if_interrupted,
    this_process,
)


def a_run(run_id: str, status: str, tags: dict[str, str]) -> Run:
    info = RunInfo(
        run_id, "0", "tester", status, 0, None, "stage", artifact_uri="file:///tmp", run_name=run_id
    )
    return Run(info, RunData(tags=[RunTag(key, value) for key, value in tags.items()]))


def a_dead_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


@pytest.mark.slow
def test_this_process_is_alive_and_a_finished_one_is_not():
    me = this_process()
    assert me.pid == os.getpid() and is_alive(me.pid, me.started)
    assert not is_alive(a_dead_pid(), None)


@pytest.mark.slow
def test_a_process_that_exited_but_is_not_reaped_yet_is_dead():
    """After kill -9, init may reap a process late; until then kill(pid, 0) still finds it."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while not is_zombie(child.pid):
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.05)
        os.kill(child.pid, 0)  # still there, as a zombie
        assert not is_alive(child.pid, process_start_ticks(child.pid))
    finally:
        child.wait()


def test_a_reused_pid_is_told_apart_by_its_start_time():
    started = process_start_ticks(os.getpid())
    assert started is not None  # Linux
    assert not is_alive(os.getpid(), str(int(started) - 1))


@pytest.mark.slow
def test_only_running_runs_of_this_host_whose_process_is_gone_are_orphaned():
    dead = a_dead_pid()
    me = this_process()
    runs = [
        a_run("dead", "RUNNING", {TAG_PROCESS_HOST: "here", TAG_PROCESS_ID: str(dead)}),
        a_run("alive", "RUNNING", me.tags() | {TAG_PROCESS_HOST: "here"}),
        a_run("elsewhere", "RUNNING", {TAG_PROCESS_HOST: "there", TAG_PROCESS_ID: str(dead)}),
        a_run("finished", "FINISHED", {TAG_PROCESS_HOST: "here", TAG_PROCESS_ID: str(dead)}),
        a_run("untagged", "RUNNING", {}),
        a_run(
            "reused pid",
            "RUNNING",
            {TAG_PROCESS_HOST: "here", TAG_PROCESS_ID: str(me.pid), TAG_PROCESS_STARTED: "1"},
        ),
    ]
    assert [run.info.run_id for run in orphaned(runs, "here")] == ["dead", "reused pid"]


def test_a_held_signal_is_raised_at_the_next_check_not_where_it_arrived(signals_raise):
    reached = []
    with pytest.raises(Interrupted) as caught, interruptions_held():
        os.kill(os.getpid(), signal.SIGTERM)
        reached.append("after the signal")
        raise_if_interrupted()
        reached.append("after the check")
    assert reached == ["after the signal"]
    assert caught.value.exit_code == 128 + signal.SIGTERM  # the shell's convention


def test_a_held_signal_is_raised_when_the_outermost_block_ends(signals_raise):
    reached = []
    with pytest.raises(Interrupted), interruptions_held():
        with interruptions_held():
            os.kill(os.getpid(), signal.SIGINT)
        reached.append("after the inner block")
    assert reached == ["after the inner block"]


def test_outside_a_held_block_a_signal_raises_at_once(signals_raise):
    with pytest.raises(Interrupted):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)


def test_a_step_run_not_tagged_yet_goes_with_its_parent():
    """The driver died between creating a step's run and tagging it: the run is judged by its parent's
    process (a fake `alive`: pid 1 dead, pid 2 alive), never when that parent lives or is elsewhere."""
    parent_id = "mlflow.parentRunId"

    def alive(pid: int, _started: str | None) -> bool:
        return pid == 2

    ended_parent = a_run("ended parent", "KILLED", {TAG_PROCESS_HOST: "here", TAG_PROCESS_ID: "1"})
    runs = [
        a_run("dead parent", "RUNNING", {TAG_PROCESS_HOST: "here", TAG_PROCESS_ID: "1"}),
        a_run("live parent", "RUNNING", {TAG_PROCESS_HOST: "here", TAG_PROCESS_ID: "2"}),
        a_run("remote parent", "RUNNING", {TAG_PROCESS_HOST: "there", TAG_PROCESS_ID: "1"}),
        a_run("child of dead", "RUNNING", {parent_id: "dead parent"}),
        a_run("child of live", "RUNNING", {parent_id: "live parent"}),
        a_run("child of remote", "RUNNING", {parent_id: "remote parent"}),
        a_run("child of ended", "RUNNING", {parent_id: "ended parent"}),
        a_run("child of unknown", "RUNNING", {parent_id: "gone"}),
    ]
    found = orphaned(runs, "here", alive, parent_of={"ended parent": ended_parent}.get)
    assert [run.info.run_id for run in found] == ["dead parent", "child of dead", "child of ended"]


# Run in a process of its own: a pytest worker's other children (a test's servers) are not this test's.
ENDING_CHILDREN = """
import signal, subprocess, sys, time
from flow_steps.runtime.interruption import children, end_children
assert children() == []
SLEEP = "import time; time.sleep(60)"
DEAF = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); " + SLEEP
polite = subprocess.Popen([sys.executable, "-c", SLEEP])
stubborn = subprocess.Popen([sys.executable, "-c", DEAF], stdout=subprocess.PIPE)
stubborn.stdout.readline()  # its SIGTERM is ignored from here on
started = time.monotonic()
ended = end_children(grace_seconds=1)
seconds = round(time.monotonic() - started)
both = sorted(ended) == sorted([polite.pid, stubborn.pid])
print(both, polite.wait(), stubborn.wait(), children(), seconds)
"""


@pytest.mark.slow
def test_a_failing_driver_ends_its_childrens_processes_sigterm_then_sigkill():
    """A child that takes SIGTERM ends at once; one that ignores it is killed after the grace (1 s)."""
    result = subprocess.run(
        [sys.executable, "-c", ENDING_CHILDREN], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["True", str(-signal.SIGTERM), str(-signal.SIGKILL), "[]", "1"]
