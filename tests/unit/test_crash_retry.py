"""Which deaths of a step's process are crashes (retried), what the driver says about them, and when it
runs the step again: the pure decisions of orchestration/crashes.py."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
from unittest.mock import patch

import pytest
from click.testing import CliRunner

from flow_steps.config.declarations import CRASH_RETRIES
from flow_steps.config.entry_points import BY_ENTRY_POINT
from flow_steps.config.names import MAIN_ENTRY_POINT, UNIVERSE_ENTRY_POINT
from flow_steps.orchestration.crashes import (
    death_message,
    death_signal,
    is_crash,
    last_logged,
    retries_tag,
    should_retry,
)
from flow_steps.runtime.lifecycle import LOG_FORMAT, entry_point

CRASHES = {signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE}


@pytest.mark.parametrize("received", list(signal.Signals))
def test_exactly_the_five_fault_signals_are_crashes(received):
    """SIGSEGV, SIGBUS, SIGABRT, SIGILL and SIGFPE come from the process's own fault; every other signal
    (SIGINT, SIGTERM, SIGKILL above all: someone asked) is not retried."""
    assert is_crash(death_signal(-received.value)) is (received in CRASHES)


def test_a_negative_return_code_names_the_signal_as_subprocess_reports_it():
    assert death_signal(-signal.SIGSEGV) is signal.SIGSEGV
    assert death_signal(-11) is signal.SIGSEGV
    assert death_signal(-9) is signal.SIGKILL
    assert death_signal(-1000) is None  # no such signal


@pytest.mark.parametrize("code", [None, 0, 1, 2, 130, 143, 139, 134])
def test_an_exit_code_is_never_a_signal(code):
    """Exit codes are the step's own: 1 a failure, 2 a refused option, 130/143 an interruption it handled
    (its run KILLED); even 139 (128 + SIGSEGV) is what the process chose to say, not how it died."""
    assert death_signal(code) is None
    assert not is_crash(death_signal(code))


def test_the_wording_names_the_step_the_signal_and_what_it_last_logged():
    assert (
        death_message("train_model", signal.SIGSEGV, "AutoARIMA fitted and forecast")
        == "train_model's process died of SIGSEGV; it last logged: AutoARIMA fitted and forecast"
    )
    assert (
        death_message("transform_data", signal.SIGBUS, None, attempt=2)
        == "transform_data's process died of SIGBUS (attempt 2); it had logged nothing"
    )


def log_line(message: str, name: str = "flow_steps.train_model", level: int = logging.INFO) -> str:
    """A line as the steps' log handler writes it (lifecycle.LOG_FORMAT)."""
    record = logging.LogRecord(name, level, __file__, 1, message, None, None)
    return logging.Formatter(LOG_FORMAT).format(record)


def test_the_last_log_line_is_found_behind_a_crash_report():
    """faulthandler's traceback and the extension modules' list come after it: they say where it died,
    the log what it was doing."""
    stderr = "\n".join(
        [
            log_line("Read 300 prices"),
            "I0000 00:00:1765000000.000000 12345 cpu_feature_guard.cc:210] This TensorFlow binary ...",
            log_line("AutoARIMA fitted and forecast", "flow_steps.training.evaluation"),
            "Fatal Python error: Segmentation fault",
            "",
            "Current thread 0x00007f0000000000 (most recent call first):",
            '  File "/x/keras/src/trainers/trainer.py", line 42 in fit',
            "",
            "Extension modules: numpy._core._multiarray_umath, pandas._libs.lib (total: 2)",
        ]
    )
    assert last_logged(stderr) == "AutoARIMA fitted and forecast"


def test_a_step_that_logged_nothing_has_no_last_line_and_a_long_one_is_cut():
    assert last_logged("Fatal Python error: Aborted\n") is None
    assert last_logged("") is None
    long = last_logged(log_line("x" * 1000))
    assert long.endswith("...") and len(long) == 300


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


def test_an_entry_point_prints_a_native_crash_traceback_even_under_clicks_test_runner(
    tracking, signals_raise
):
    """`faulthandler` on the process's own stderr: click's test runner replaces sys.stderr with one that
    has no file descriptor, and steps invoked that way (tests, notebooks) must still run."""
    faulthandler.disable()
    # os.environ as it was afterwards (entry_point sets MLflow's client defaults)
    with patch.dict(os.environ), CliRunner().isolation(), entry_point("Check"):
        assert faulthandler.is_enabled()
