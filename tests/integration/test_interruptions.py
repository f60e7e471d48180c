"""No run left RUNNING: SIGTERM to the pipeline while it trains; a `kill -9` cleaned up by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
from mlflow.entities import Run

from flow_steps.constants import TAG_ERROR, TAG_PROCESS_HOST, TAG_PROCESS_ID, TRAIN_STEP
from flow_steps.interruption import is_alive, this_process
from tests.conftest import PROJECT_ROOT, TINY_PARAMS, cli_options, python_main

pytestmark = pytest.mark.integration

# Enough epochs to still be training when the signal comes (about 0.1 s each), with no early stop.
LONG_TRAINING = {**TINY_PARAMS, "epochs": "2000", "patience": "2000"}


@contextmanager
def pipeline_in_background(tracking, params: dict[str, str]) -> Iterator[subprocess.Popen]:
    """`python main.py` in its own process group, killed with its group on the way out."""
    process = subprocess.Popen(
        [sys.executable, "main.py", *cli_options(params)],
        cwd=PROJECT_ROOT,
        env=tracking.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def wait_until_training(
    tracking, process: subprocess.Popen, settle_seconds: float = 3, timeout: float = 120
) -> Run:
    """The train_model run once its process has started (tagged), `settle_seconds` later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        running = [run for run in tracking.runs_of(TRAIN_STEP) if run.info.status == "RUNNING"]
        if running and TAG_PROCESS_ID in running[0].data.tags:
            time.sleep(settle_seconds)  # 3 s: past its imports, into fitting
            return running[0]
        time.sleep(0.5)
    raise AssertionError("train_model did not start")


def test_sigterm_during_training_marks_the_parent_and_the_step_killed(tracking):
    with pipeline_in_background(tracking, LONG_TRAINING) as process:
        train = wait_until_training(tracking, process)
        process.send_signal(signal.SIGTERM)  # to main.py only: it must stop the step itself
        _, stderr = process.communicate(timeout=120)

    assert process.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "interrupted by SIGTERM; its runs are marked KILLED" in stderr.strip().splitlines()[-1]
    [parent] = tracking.parents()
    train = tracking.client.get_run(train.info.run_id)
    assert (parent.info.status, train.info.status) == ("KILLED", "KILLED")
    assert parent.data.tags[TAG_ERROR] == train.data.tags[TAG_ERROR] == "interrupted by SIGTERM"
    assert not is_alive(int(train.data.tags[TAG_PROCESS_ID]), None)
    assert not [run for run in tracking.runs() if run.info.status == "RUNNING"]


def test_after_kill_9_the_next_run_marks_dead_runs_killed_and_leaves_live_ones_alone(tracking):
    with pipeline_in_background(tracking, TINY_PARAMS) as process:
        train = wait_until_training(tracking, process, settle_seconds=0)
        os.killpg(process.pid, signal.SIGKILL)  # the pipeline and its step, with no chance to clean up
        process.wait(timeout=30)
    [killed_parent] = tracking.parents()
    assert killed_parent.info.status == tracking.client.get_run(train.info.run_id).info.status == "RUNNING"

    me = this_process()
    live = tracking.client.create_run(tracking.experiment_id, tags=me.tags())
    elsewhere = tracking.client.create_run(
        tracking.experiment_id, tags={TAG_PROCESS_HOST: "another-host", TAG_PROCESS_ID: "1"}
    )
    try:
        # The same parameters, asking to reuse training: the dead training must not count as done.
        result = python_main(tracking, *cli_options(TINY_PARAMS), "--reuse-training")
        assert result.returncode == 0, result.stderr[-3000:]
        for run_id in (killed_parent.info.run_id, train.info.run_id):
            run = tracking.client.get_run(run_id)
            assert run.info.status == "KILLED"
            assert f"on {me.host} ended without closing the run" in run.data.tags[TAG_ERROR]
        assert tracking.client.get_run(live.info.run_id).info.status == "RUNNING"
        assert tracking.client.get_run(elsewhere.info.run_id).info.status == "RUNNING"
        newest = max(tracking.parents(), key=lambda run: run.info.start_time)
        assert newest.info.status == "FINISHED"
        assert newest.data.tags[f"reused_{TRAIN_STEP}"] == "false"  # the killed training is not reused
        assert newest.data.tags[f"run_id_{TRAIN_STEP}"] != train.info.run_id
    finally:
        for run in (live, elsewhere):
            tracking.client.set_terminated(run.info.run_id, "FINISHED")
