"""Which deaths of a step's process are crashes (retried), what the driver says about them, and when it
runs the step again: the pure decisions of orchestration/crashes.py, and the crash report a step's
process keeps (runtime/lifecycle.py's `report_crashes`)."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import patch

import pytest
from click.testing import CliRunner

from flow_steps.config.declarations import CRASH_RETRIES
from flow_steps.config.entry_points import BY_ENTRY_POINT
from flow_steps.config.names import MAIN_ENTRY_POINT, UNIVERSE_ENTRY_POINT
from flow_steps.orchestration.crashes import (
    Crash,
    crash_of,
    death_message,
    reported_signal,
    retries_tag,
    should_retry,
)
from flow_steps.orchestration.steps import _variable_set, read_crash
from flow_steps.runtime.lifecycle import CRASH_REPORT_VARIABLE, LAST_LINE_SUFFIX, LastLine, entry_point

# faulthandler's reports as real processes wrote them (Python 3.11; the slow test in
# tests/integration/test_crash_retry.py makes them again): one per signal, the first with a second
# thread and extension modules, as a step's report has.
ABORTED = """Fatal Python error: Aborted

Thread 0x00007fda7bcfe6c0 (most recent call first):
  File "/root/.pyenv/versions/3.11.7/lib/python3.11/threading.py", line 982 in run
  File "/root/.pyenv/versions/3.11.7/lib/python3.11/threading.py", line 1045 in _bootstrap_inner
  File "/root/.pyenv/versions/3.11.7/lib/python3.11/threading.py", line 1002 in _bootstrap

Current thread 0x00007fda84459b80 (most recent call first):
  File "<string>", line 6 in fit
  File "<string>", line 7 in <module>

Extension modules: numpy._core._multiarray_umath, numpy.linalg._umath_linalg (total: 2)"""
REPORTS = {
    signal.SIGABRT: ABORTED,
    **{
        received: f"""Fatal Python error: {header}

Current thread 0x00007fb84b032b80 (most recent call first):
  File "<string>", line 4 in <module>
"""
        for received, header in [
            (signal.SIGSEGV, "Segmentation fault"),
            (signal.SIGBUS, "Bus error"),
            (signal.SIGILL, "Illegal instruction"),
            (signal.SIGFPE, "Floating point exception"),
        ]
    },
}


@pytest.mark.parametrize("received", list(REPORTS))
def test_a_report_names_the_signal_the_process_died_of(received):
    assert reported_signal(REPORTS[received]) is received


@pytest.mark.parametrize(
    "report",
    [
        "",  # SIGKILL, SIGTERM, SIGINT, a refusal: the process wrote no report
        "\n",
        'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: no',
        "Fatal Python error: _PyMem_DebugMalloc: Python memory allocator called without holding the GIL",
        "Fatal Python error: Segmentation faulty",
    ],
)
def test_anything_but_a_report_of_the_five_signals_is_no_crash(report):
    assert reported_signal(report) is None
    assert crash_of(report, "Training on 240 days") is None


def test_a_crash_keeps_its_report_and_what_was_last_logged_on_one_line_cut_short():
    crash = crash_of(REPORTS[signal.SIGSEGV], "Training on 240 days,\n  testing on the last 60\n")
    assert crash == Crash(
        signal.SIGSEGV, REPORTS[signal.SIGSEGV], "Training on 240 days, testing on the last 60"
    )
    assert crash_of(ABORTED, None).last_logged is None
    assert crash_of(ABORTED, "  \n").last_logged is None
    long = crash_of(ABORTED, "x" * 1000).last_logged
    assert long.endswith("...") and len(long) == 300


def test_the_wording_names_the_step_the_signal_and_what_it_last_logged():
    assert (
        death_message("train_model", Crash(signal.SIGSEGV, "", "AutoARIMA fitted and forecast"))
        == "train_model's process died of SIGSEGV; it last logged: AutoARIMA fitted and forecast"
    )
    assert (
        death_message("transform_data", Crash(signal.SIGBUS, "", None), attempt=2)
        == "transform_data's process died of SIGBUS (attempt 2); it had logged nothing"
    )


def test_a_step_runs_again_while_it_has_crashed_no_more_than_crash_retries_times():
    assert [should_retry(crashes, 1) for crashes in (1, 2)] == [True, False]
    assert not should_retry(1, 0)
    assert [should_retry(crashes, 3) for crashes in (1, 2, 3, 4)] == [True, True, True, False]


def test_the_parent_run_records_each_retry_as_step_and_signal():
    assert retries_tag([("train_model", signal.SIGSEGV)]) == "train_model:SIGSEGV"
    assert (
        retries_tag([("transform_data", signal.SIGBUS), ("train_model", signal.SIGABRT)])
        == "transform_data:SIGBUS,train_model:SIGABRT"
    )


def test_crash_retries_is_mains_alone_from_0_to_3_default_1():
    """A universe's in-worker executor runs steps in its worker (a crash ends the worker, counted as the
    ticker's failure); its process executor's `python main.py` takes the default."""
    assert CRASH_RETRIES in BY_ENTRY_POINT[MAIN_ENTRY_POINT].params
    assert CRASH_RETRIES not in BY_ENTRY_POINT[UNIVERSE_ENTRY_POINT].params
    assert (CRASH_RETRIES.default, CRASH_RETRIES.low, CRASH_RETRIES.high) == (1, 0, 3)


def test_the_driver_reads_a_report_and_the_last_line_beside_it(tmp_path):
    report = tmp_path / "train_model.report"
    assert read_crash(report) is None  # the step never started
    report.write_text("")
    assert read_crash(report) is None  # it started and did not crash
    report.write_text(REPORTS[signal.SIGILL])
    assert read_crash(report) == Crash(signal.SIGILL, REPORTS[signal.SIGILL], None)
    Path(f"{report}{LAST_LINE_SUFFIX}").write_text("Read 300 prices")
    assert read_crash(report).last_logged == "Read 300 prices"


def test_the_variable_is_set_for_the_call_only():
    with patch.dict(os.environ, {CRASH_REPORT_VARIABLE: "before"}):
        with _variable_set(CRASH_REPORT_VARIABLE, "during"):
            assert os.environ[CRASH_REPORT_VARIABLE] == "during"
        assert os.environ[CRASH_REPORT_VARIABLE] == "before"
    with patch.dict(os.environ), pytest.raises(KeyError, match="inside"):
        os.environ.pop(CRASH_REPORT_VARIABLE, None)
        with _variable_set(CRASH_REPORT_VARIABLE, "during"):
            raise KeyError("inside")
    assert CRASH_REPORT_VARIABLE not in os.environ


@pytest.fixture
def faulthandler_back() -> Iterator[None]:
    """faulthandler on this process's stderr again afterwards (as pytest had it), no LastLine handler."""
    yield
    root = logging.getLogger()
    for handler in [handler for handler in root.handlers if isinstance(handler, LastLine)]:
        root.removeHandler(handler)
    faulthandler.enable(file=sys.__stderr__, all_threads=True)


def test_an_entry_point_prints_a_native_crash_traceback_even_under_clicks_test_runner(
    tracking, signals_raise, faulthandler_back
):
    """Without the driver's variable (a step run by hand), `faulthandler` on the process's own stderr:
    click's test runner replaces sys.stderr with one that has no file descriptor, and steps invoked that
    way (tests, notebooks) must still run."""
    faulthandler.disable()
    # os.environ as it was afterwards (entry_point sets MLflow's client defaults)
    with patch.dict(os.environ):
        os.environ.pop(CRASH_REPORT_VARIABLE, None)
        with CliRunner().isolation(), entry_point("Check"):
            assert faulthandler.is_enabled()


def test_a_step_started_by_the_driver_reports_into_its_file_and_keeps_its_last_log_line(
    tracking, signals_raise, faulthandler_back, tmp_path
):
    """With the driver's variable, the report file is opened (faulthandler writes there when the process
    dies) and each log record replaces the last line beside it."""
    report = tmp_path / "train_model.report"
    faulthandler.disable()
    with (
        patch.dict(os.environ, {CRASH_REPORT_VARIABLE: str(report)}),
        CliRunner().isolation(),
        entry_point("Check"),
    ):
        assert faulthandler.is_enabled() and report.exists()
        logger = logging.getLogger("flow_steps.train_model")
        logger.info("Read %d prices", 300)
        logger.warning("Training on 240 days")
        assert Path(f"{report}{LAST_LINE_SUFFIX}").read_text() == "Training on 240 days"
    assert read_crash(report) is None


def test_the_last_line_is_kept_and_a_removed_folder_is_ignored_in_silence(tmp_path, capsys):
    """A step may outlive its driver's report folder (the driver gave up on an outage): its log lines go
    on, and nothing is printed about the file it can no longer write."""
    folder = tmp_path / "report"
    folder.mkdir()
    handler = LastLine(folder / "step.report.last")
    record = logging.LogRecord("step", logging.INFO, __file__, 1, "fitted %d epochs", (3,), None)
    handler.emit(record)
    assert (folder / "step.report.last").read_text() == "fitted 3 epochs"
    (folder / "step.report.last").unlink()
    folder.rmdir()
    handler.emit(record)
    assert capsys.readouterr().err == ""


def test_a_step_that_starts_after_its_driver_removed_the_folder_reports_on_its_stderr(
    tracking, signals_raise, faulthandler_back, tmp_path
):
    """The driver gave up on an outage and removed its report folder while the step was still importing
    (CI, 2026-12-06: a FileNotFoundError traceback): the step starts, faulthandler on its own stderr."""
    faulthandler.disable()
    with (
        patch.dict(os.environ, {CRASH_REPORT_VARIABLE: str(tmp_path / "gone" / "train_model.report")}),
        CliRunner().isolation(),
        entry_point("Check"),
    ):
        assert faulthandler.is_enabled()
