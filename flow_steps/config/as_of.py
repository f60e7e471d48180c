"""`as_of`: the instant a run takes as "now", so that a past day can be run again as it was.

`now` is the clock's instant; a date is the end of that day (UTC), after every exchange's close; a date
and time is that instant (UTC when it names no zone). data/closes.py drops every bar not closed by then.
"""

from __future__ import annotations

import pandas as pd

from flow_steps.config.errors import PipelineError

NOW = "now"
DATE_LENGTH = len("2026-12-04")


def resolve_as_of(value: str, clock: pd.Timestamp) -> pd.Timestamp:
    """The instant (UTC) an `as_of` value means: `now` is `clock`; a date means the end of that day (UTC),
    after every exchange's close; a date and time is that instant (UTC when it names no zone)."""
    text = value.strip()
    if text.lower() == NOW:
        return pd.Timestamp(clock).tz_convert("UTC") if clock.tzinfo else pd.Timestamp(clock, tz="UTC")
    try:
        instant = pd.Timestamp(text).as_unit("ns")
        if instant is not pd.NaT and len(text) <= DATE_LENGTH:  # a date alone: after that day's sessions
            instant = instant.normalize() + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    except (ValueError, OverflowError):
        instant = pd.NaT
    if instant is pd.NaT:
        raise PipelineError(
            f"as_of='{value}' is neither '{NOW}', a date (2026-12-04) nor a date and time "
            "(2026-12-04T21:30:00Z)"
        )
    return instant.tz_convert("UTC") if instant.tzinfo else instant.tz_localize("UTC")


def check_as_of(value: object) -> None:
    """Refuse, before anything starts, an `as_of` that is no instant."""
    resolve_as_of(str(value), pd.Timestamp.now(tz="UTC"))
