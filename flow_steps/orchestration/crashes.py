"""Whether a step's process crashed, what to say about it, and whether to run it again: pure decisions.

A crash is a death by one of the five signals a process gets from its own fault (SIGSEGV, SIGBUS, SIGABRT,
SIGILL, SIGFPE): retried. SIGINT, SIGTERM and SIGKILL were sent on purpose (a person, the system, a
scheduler) and a non-zero exit code is the step's own refusal: never retried.
"""

from __future__ import annotations

import re
import signal

from flow_steps.runtime.lifecycle import LOG_FORMAT

CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGILL, signal.SIGFPE})
LAST_LOGGED_CHARS = 300

# What each field of the steps' LOG_FORMAT looks like (`2026-12-06 07:30:00,123 INFO name: message`).
LOG_FIELDS = {
    "asctime": r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}",
    "levelname": r"[A-Z]+",
    "name": r"\S+",
    "message": r"(?P<message>.*)",
}


def log_line_pattern(log_format: str) -> re.Pattern[str]:
    """A regular expression matching one line `log_format` writes, its message as group `message`."""
    parts = re.split(r"%\((\w+)\)s", log_format)  # text, field, text, field, ..., text
    return re.compile(
        "^" + "".join(LOG_FIELDS[part] if i % 2 else re.escape(part) for i, part in enumerate(parts)) + "$"
    )


LOG_LINE = log_line_pattern(LOG_FORMAT)


class StepCrashed(Exception):
    """A step's process died of a crash signal; the message is `death_message`'s line."""

    def __init__(self, message: str, received: signal.Signals):
        super().__init__(message)
        self.signal = received


def death_signal(returncode: int | None) -> signal.Signals | None:
    """The signal a step's process died of, else None (it still runs, or exited by itself).

    `returncode` as `subprocess` reports it: -N for a process killed by signal N. An exit code is the
    step's own, even 128 + N: the steps exit 130 and 143 themselves when interrupted (their runs then
    end KILLED), and `bash -c <one command>` execs the step, so no shell reports a signal that way.
    """
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode)
    except ValueError:
        return None


def is_crash(received: signal.Signals | None) -> bool:
    """Whether dying of `received` is a crash (retried), not a stop someone asked for."""
    return received in CRASH_SIGNALS


def last_logged(output: str) -> str | None:
    """The message of the last log line in a step's stderr `output` (what it last said it did), or None.

    Lines in another form are skipped: a crash's own report (faulthandler's traceback, a shell's
    `Segmentation fault`) and libraries' prints say where it died, not what it was doing.
    """
    for line in reversed(output.splitlines()):
        if match := LOG_LINE.match(line.strip()):
            message = match["message"].strip()
            return message if len(message) <= LAST_LOGGED_CHARS else message[: LAST_LOGGED_CHARS - 3] + "..."
    return None


def death_message(step: str, received: signal.Signals, logged: str | None, attempt: int = 1) -> str:
    """One line: `train_model's process died of SIGSEGV; it last logged: AutoARIMA fitted and forecast`,
    with `(attempt 2)` after the signal's name for a step run again."""
    again = f" (attempt {attempt})" if attempt > 1 else ""
    said = f"it last logged: {logged}" if logged else "it had logged nothing"
    return f"{step}'s process died of {received.name}{again}; {said}"


def should_retry(crashes_so_far: int, retries: int) -> bool:
    """Whether a step whose process has crashed `crashes_so_far` times (this one included) runs again."""
    return crashes_so_far <= retries


def retries_tag(retried: list[tuple[str, signal.Signals]]) -> str:
    """The parent run's record of the crashes retried: `train_model:SIGSEGV` (comma-separated)."""
    return ",".join(f"{step}:{crash.name}" for step, crash in retried)
