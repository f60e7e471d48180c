"""Whether a step's process crashed, what to say about it, and whether to run it again: pure decisions.

A step's process started by the driver writes `faulthandler`'s report to a file the driver names
(runtime/lifecycle.py, CRASH_REPORT_VARIABLE); the report's first line names the fault. faulthandler
reports only the five signals a process gets from its own fault (SIGSEGV, SIGBUS, SIGABRT, SIGILL,
SIGFPE): a crash, retried. SIGINT, SIGTERM and SIGKILL (sent on purpose: a person, a scheduler, the
out-of-memory killer) and a step's own refusal (exit 1, or 2 for a bad option) leave no report: never
retried.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from flow_steps.config.errors import one_line

LAST_LOGGED_CHARS = 300

# faulthandler's first line for each signal it reports (CPython's faulthandler.c, as a report shows it).
FATAL_ERROR = "Fatal Python error: "
REPORTED_SIGNALS = {
    "Segmentation fault": signal.SIGSEGV,
    "Bus error": signal.SIGBUS,
    "Aborted": signal.SIGABRT,
    "Illegal instruction": signal.SIGILL,
    "Floating point exception": signal.SIGFPE,
}


@dataclass(frozen=True)
class Crash:
    """A step's process that died of `signal`: faulthandler's `report` and the last line it logged."""

    signal: signal.Signals
    report: str
    last_logged: str | None


class StepCrashed(Exception):
    """A step's process crashed; the message is `death_message`'s line."""

    def __init__(self, message: str, crash: Crash):
        super().__init__(message)
        self.crash = crash


def reported_signal(report: str) -> signal.Signals | None:
    """The signal a faulthandler `report` names on its first line (`Fatal Python error: Bus error`), or
    None: an empty report (the process did not crash) or one in another form."""
    first = report.lstrip().partition("\n")[0].strip()
    if not first.startswith(FATAL_ERROR):
        return None
    return REPORTED_SIGNALS.get(first.removeprefix(FATAL_ERROR))


def crash_of(report: str, last_logged: str | None) -> Crash | None:
    """The crash a step's `report` records, with what it last logged (on one line, cut to
    LAST_LOGGED_CHARS, secrets masked), or None when it records none."""
    if (received := reported_signal(report)) is None:
        return None
    said = one_line(last_logged or "") or None
    if said and len(said) > LAST_LOGGED_CHARS:
        said = said[: LAST_LOGGED_CHARS - 3] + "..."
    return Crash(received, report, said)


def death_message(step: str, crash: Crash, attempt: int = 1) -> str:
    """One line: `train_model's process died of SIGSEGV; it last logged: AutoARIMA fitted and forecast`,
    with `(attempt 2)` after the signal's name for a step run again."""
    again = f" (attempt {attempt})" if attempt > 1 else ""
    said = f"it last logged: {crash.last_logged}" if crash.last_logged else "it had logged nothing"
    return f"{step}'s process died of {crash.signal.name}{again}; {said}"


def should_retry(crashes_so_far: int, retries: int) -> bool:
    """Whether a step whose process has crashed `crashes_so_far` times (this one included) runs again."""
    return crashes_so_far <= retries


def retries_tag(retried: list[tuple[str, signal.Signals]]) -> str:
    """The parent run's record of the crashes retried: `train_model:SIGSEGV` (comma-separated)."""
    return ",".join(f"{step}:{crash.name}" for step, crash in retried)
