"""No run left RUNNING: a `kill -9` cleaned up by the next run; SIGTERM to a pipeline while it trains."""

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

from flow_steps.config.names import (
    DOWNLOAD_STEP,
    TAG_ERROR,
    TAG_PROCESS_HOST,
    TAG_PROCESS_ID,
    TRAIN_STEP,
    TRANSFORM_STEP,
)
from flow_steps.runtime.interruption import EXIT_CODES, is_alive, this_process
from tests.conftest import PROJECT_ROOT, TINY_PARAMS, cli_options
from tests.support.helpers import mlflow_run
from tests.support.price_server import HANG

# Enough epochs to still be training when the signal comes (about 0.1 s each), with no early stop.
LONG_TRAINING = {**TINY_PARAMS, "epochs": "2000", "patience": "2000"}


@contextmanager
def pipeline_in_background(tracking, params: dict[str, str], *options: str) -> Iterator[subprocess.Popen]:
    """`python main.py` in its own process group, killed with its group on the way out."""
    process = subprocess.Popen(
        [sys.executable, "main.py", *cli_options(params), *options],
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
    tracking,
    process: subprocess.Popen,
    settle_seconds: float = 3,
    timeout: float = 120,
    not_this_one: str | None = None,
) -> Run:
    """The RUNNING train_model run (other than `not_this_one`) once its process has started (tagged),
    `settle_seconds` later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        running = [
            run
            for run in tracking.runs_of(TRAIN_STEP)
            if run.info.status == "RUNNING" and run.info.run_id != not_this_one
        ]
        if running and TAG_PROCESS_ID in running[0].data.tags:
            time.sleep(settle_seconds)  # 3 s: past its imports, into fitting
            return running[0]
        time.sleep(0.5)
    raise AssertionError("train_model did not start")


def test_after_kill_9_the_next_run_closes_the_dead_runs_and_a_sigterm_ends_its_own_killed(tracking):
    """A pipeline killed with -9 as it starts training leaves its runs RUNNING. The next one, with the
    same parameters and asking to reuse training, marks them KILLED (runs of live processes and of other
    hosts are left alone), reuses the finished download and transform but not the dead training, and is
    itself stopped by a SIGTERM while it trains: its parent and its step end KILLED, with no traceback."""
    with pipeline_in_background(tracking, LONG_TRAINING) as process:
        dead_train = wait_until_training(tracking, process, settle_seconds=0)
        os.killpg(process.pid, signal.SIGKILL)  # the pipeline and its step, with no chance to clean up
        process.wait(timeout=30)
    [dead_parent] = tracking.parents()
    dead = {dead_parent.info.run_id, dead_train.info.run_id}
    assert {tracking.client.get_run(run_id).info.status for run_id in dead} == {"RUNNING"}
    dead_children = tracking.children(dead_parent)

    me = this_process()
    live = tracking.client.create_run(tracking.experiment_id, tags=me.tags())
    elsewhere = tracking.client.create_run(
        tracking.experiment_id, tags={TAG_PROCESS_HOST: "another-host", TAG_PROCESS_ID: "1"}
    )
    try:
        with pipeline_in_background(tracking, LONG_TRAINING, "--reuse-training") as process:
            train = wait_until_training(tracking, process, not_this_one=dead_train.info.run_id)
            process.send_signal(signal.SIGTERM)  # to main.py only: it must stop the step itself
            _, stderr = process.communicate(timeout=120)

        assert process.returncode == EXIT_CODES[signal.SIGTERM], stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]
        assert "interrupted by SIGTERM; its runs are marked KILLED" in stderr.strip().splitlines()[-1]
        for run_id in dead:
            run = tracking.client.get_run(run_id)
            assert run.info.status == "KILLED"
            assert f"on {me.host} ended without closing the run" in run.data.tags[TAG_ERROR]
        running = {run.info.run_id for run in tracking.runs() if run.info.status == "RUNNING"}
        assert running == {live.info.run_id, elsewhere.info.run_id}

        [parent] = [run for run in tracking.parents() if run.info.run_id not in dead | running]
        train = tracking.client.get_run(train.info.run_id)
        assert train.data.tags["mlflow.parentRunId"] == parent.info.run_id  # trained anew: not reused
        for step in (DOWNLOAD_STEP, TRANSFORM_STEP):
            assert parent.data.tags[f"reused_{step}"] == "true"
            assert parent.data.tags[f"run_id_{step}"] == dead_children[step].info.run_id
        assert (parent.info.status, train.info.status) == ("KILLED", "KILLED")
        assert parent.data.tags[TAG_ERROR] == train.data.tags[TAG_ERROR] == "interrupted by SIGTERM"
        assert not is_alive(int(train.data.tags[TAG_PROCESS_ID]), None)
    finally:
        for run in (live, elsewhere):
            tracking.client.set_terminated(run.info.run_id, "FINISHED")


def running_download(tracking, process: subprocess.Popen, timeout: float = 120) -> Run:
    """The download run once its step process has tagged it (it is then waiting on the price server)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        launched, alone = tracking.runs_of(DOWNLOAD_STEP), tracking.runs_of_name(DOWNLOAD_STEP)
        found = [run for run in launched + alone if TAG_PROCESS_ID in run.data.tags]
        if found:
            return found[0]
        time.sleep(0.3)
    raise AssertionError("download_raw_data did not start")


@pytest.mark.parametrize("command", ["python main.py", "mlflow run .", "a step alone"])
def test_ctrl_c_stops_the_pipeline_and_its_step_and_leaves_nothing_running(tracking, price_server, command):
    """Ctrl-C (SIGINT to the terminal's process group) while the download waits on a silent server. With
    `python main.py` or the step run alone: exit 130, one line, parent and step KILLED. With `mlflow run .`,
    MLflow's own CLI prints 'Aborted!', exits 1 and marks the run it made FAILED (MLflow 3.17 compares
    the run's status string with RunStatus numbers, so it overwrites any end state); the step is KILLED
    all the same, the parent carries the reason, and no run is left RUNNING."""
    url = f"{price_server.url}/files/EOD-MSFT.csv"
    price_server.scripted["/files/EOD-MSFT.csv"] = [HANG]
    price_server.hang_seconds = 120
    params = {**TINY_PARAMS, "data_source": url}
    if command == "python main.py":
        args = [sys.executable, "main.py", *cli_options(params)]
    elif command == "a step alone":
        args = [sys.executable, "-m", "flow_steps.download_raw_data", "--data-source", url]
    else:
        args = mlflow_run(params)
    env = {**tracking.env, "PRICE_SOURCE_TIMEOUT": "120"}
    process = subprocess.Popen(
        args,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        download = running_download(tracking, process)
        time.sleep(1)  # into the request
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert "Traceback" not in stderr, stderr[-3000:]
    download = tracking.client.get_run(download.info.run_id)
    assert download.info.status == "KILLED" and download.data.tags[TAG_ERROR] == "interrupted by SIGINT"
    [parent] = tracking.parents()  # the download itself, when the step runs alone
    assert parent.data.tags[TAG_ERROR] == "interrupted by SIGINT"
    if command == "a step alone":
        assert process.returncode == EXIT_CODES[signal.SIGINT] and parent.info.run_id == download.info.run_id
        last = stderr.strip().splitlines()[-1]
        assert last.endswith("download_raw_data interrupted by SIGINT; its run is marked KILLED")
    elif command == "python main.py":
        assert process.returncode == EXIT_CODES[signal.SIGINT]
        assert (
            stderr.strip()
            .splitlines()[-1]
            .endswith("Pipeline interrupted by SIGINT; its runs are marked KILLED")
        )
        assert parent.info.status == "KILLED"
    else:
        assert process.returncode == 1 and stderr.strip().splitlines()[-1] == "Aborted!"
        assert parent.info.status == "FAILED"
    assert not [run for run in tracking.runs() if run.info.status == "RUNNING"]
    assert tracking.runs_of(TRANSFORM_STEP) == []  # nothing after the step that was stopped
