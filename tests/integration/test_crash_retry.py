"""A step's process that crashes is named in one line and run again once: `python main.py` whose
train_model process is sent SIGSEGV while it trains (the pid is on its run's process tags); and the
crash reports real processes write, read as the driver reads them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from mlflow.entities import Run

from flow_steps.config.names import TAG_CRASH_RETRIES, TAG_ERROR, TAG_PROCESS_ID, TRAIN_STEP
from flow_steps.orchestration.crashes import reported_signal
from flow_steps.orchestration.steps import read_crash
from flow_steps.runtime.lifecycle import CRASH_REPORT_VARIABLE
from tests.conftest import PROJECT_ROOT, TINY_PARAMS, cli_options
from tests.support.helpers import assert_one_line_failure

# 30 epochs (about 0.1 s each, no early stop): still at work 2 s after its run is tagged, and short.
TRAINING = {**TINY_PARAMS, "epochs": "30", "patience": "30"}
INTO_WORK_SECONDS = 2  # after its process tagged its run: past its imports, into reading and fitting
TEMPORARY = "tmp"  # the pipeline's TMPDIR, under the test's folder


@contextmanager
def pipeline(tracking, stderr_path: Path, *options: str) -> Iterator[subprocess.Popen]:
    """`python main.py` in its own process group, its stderr to a file (a pipe nobody reads could fill
    and stall it), its temporary files beside it (TEMPORARY); the group is killed on the way out."""
    (stderr_path.parent / TEMPORARY).mkdir()
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "main.py", *cli_options(TRAINING), *options],
            cwd=PROJECT_ROOT,
            env={**tracking.env, "TMPDIR": str(stderr_path.parent / TEMPORARY)},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)


def crash_training(tracking, process: subprocess.Popen, timeout: float = 300) -> Run:
    """Once train_model runs in its own process (RUNNING, its pid tagged), SIGSEGV that process, a little
    into its work; its run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the pipeline ended before train_model started"
        running = [run for run in tracking.runs_of(TRAIN_STEP) if run.info.status == "RUNNING"]
        if running and TAG_PROCESS_ID in running[0].data.tags:
            time.sleep(INTO_WORK_SECONDS)
            os.kill(int(running[0].data.tags[TAG_PROCESS_ID]), signal.SIGSEGV)
            return running[0]
        time.sleep(0.2)
    raise AssertionError("train_model did not start")


def test_a_crashed_step_is_run_again_once_and_the_pipeline_finishes(tracking, tmp_path):
    """The crashed run ends FAILED, naming the signal and what the step last logged; the retry trains
    and the pipeline exits 0, its parent tagged crash_retries=train_model:SIGSEGV; the driver copied the
    crashed process's faulthandler report to its stderr; nothing is left RUNNING."""
    stderr_path = tmp_path / "stderr.txt"
    with pipeline(tracking, stderr_path) as process:
        crashed = crash_training(tracking, process)
        process.wait(timeout=600)
    stderr = stderr_path.read_text()
    assert process.returncode == 0, stderr[-3000:]
    # the step's faulthandler report, copied by the driver: where it crashed
    assert "Fatal Python error: Segmentation fault" in stderr and "(most recent call first)" in stderr
    assert not list((tmp_path / TEMPORARY).glob("flow-steps-crash-*"))  # the reports' folders removed
    crashed = tracking.client.get_run(crashed.info.run_id)
    assert crashed.info.status == "FAILED"
    assert crashed.data.tags[TAG_ERROR].startswith("train_model's process died of SIGSEGV; it last logged: ")
    [parent] = tracking.parents()
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[TAG_CRASH_RETRIES] == "train_model:SIGSEGV"
    trains = tracking.runs_of(TRAIN_STEP)
    [retried] = [run for run in trains if run.info.run_id != crashed.info.run_id]
    assert retried.info.status == "FINISHED"
    assert parent.data.tags[f"run_id_{TRAIN_STEP}"] == retried.info.run_id
    assert "running train_model again (retry 1 of 1)" in stderr
    assert not [run for run in tracking.runs() if run.info.status == "RUNNING"]


def test_with_no_retry_a_crash_ends_the_pipeline_with_one_line(tracking, tmp_path):
    """crash_retries=0: exit 1, the last line names the step and the signal, the step's run and the
    parent end FAILED with that reason, nothing is left RUNNING and no step ran after it."""
    stderr_path = tmp_path / "stderr.txt"
    with pipeline(tracking, stderr_path, "--crash-retries", "0") as process:
        crashed = crash_training(tracking, process)
        process.wait(timeout=600)
    result = subprocess.CompletedProcess(process.args, process.returncode, "", stderr_path.read_text())
    last = assert_one_line_failure(result, "Pipeline failed: train_model's process died of SIGSEGV; it last")
    crashed = tracking.client.get_run(crashed.info.run_id)
    [parent] = tracking.parents()
    assert (crashed.info.status, parent.info.status) == ("FAILED", "FAILED")
    assert (
        last.endswith(crashed.data.tags[TAG_ERROR])
        and parent.data.tags[TAG_ERROR] == crashed.data.tags[TAG_ERROR]
    )
    assert TAG_CRASH_RETRIES not in parent.data.tags
    assert len(tracking.runs_of(TRAIN_STEP)) == 1
    assert not [run for run in tracking.runs() if run.info.status == "RUNNING"]


# A process set up as a step's (logging, then the crash report the driver's variable names) that logs
# one line and sends itself the signal named on its command line.
DYING = """
import logging, os, signal, sys
from flow_steps.runtime.lifecycle import configure_logging, report_crashes
configure_logging()
report_crashes()
logging.getLogger("flow_steps.check").info("About to die of %s", sys.argv[1])
os.kill(os.getpid(), signal.Signals[sys.argv[1]])
"""
CRASHES = [signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE]


@pytest.fixture(scope="module")
def deaths(tmp_path_factory) -> dict[signal.Signals, tuple[int, Path]]:
    """For each of the five crash signals and SIGKILL and SIGTERM, a process that died of it (all at
    once, each in its own process group, killed if still there): its return code and report file."""
    folder = tmp_path_factory.mktemp("reports")
    started = {}
    try:
        for received in [*CRASHES, signal.SIGKILL, signal.SIGTERM]:
            report = folder / f"{received.name}.report"
            started[received] = (
                subprocess.Popen(
                    [sys.executable, "-c", DYING, received.name],
                    cwd=PROJECT_ROOT,
                    env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), CRASH_REPORT_VARIABLE: str(report)},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                ),
                report,
            )
        return {
            received: (process.wait(timeout=120), report) for received, (process, report) in started.items()
        }
    finally:
        for process, _ in started.values():
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)


@pytest.mark.parametrize("received", CRASHES, ids=lambda received: received.name)
def test_a_real_crash_report_names_the_signal_and_the_last_line_logged(deaths, received):
    code, report = deaths[received]
    assert code == -received
    assert reported_signal(report.read_text()) is received
    crash = read_crash(report)
    assert (crash.signal, crash.last_logged) == (received, f"About to die of {received.name}")
    assert "most recent call first" in crash.report


@pytest.mark.parametrize("received", [signal.SIGKILL, signal.SIGTERM], ids=lambda received: received.name)
def test_a_process_stopped_on_purpose_leaves_no_report(deaths, received):
    code, report = deaths[received]
    assert code == -received
    assert report.read_text() == ""
    assert read_crash(report) is None
