"""A universe's pace for its price source: tickers start no faster than the source allows.

Each ticker's pipeline asks its source once (the download; remote sources are never reused), so pacing
the tickers' starts across every worker paces the requests. Steady spacing (60 / rate seconds between two
starts), no bursts: the providers' allowances are per hour or per day (docs/data.md), and a pace below
them keeps a universe of hundreds of tickers clear of 429s. Pure: the clock is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass

NO_PACE = 0.0  # the parameter's "the source's own pace"


@dataclass
class Pace:
    """Starts at most `per_minute` a minute (None: no limit)."""

    per_minute: float | None
    last_start: float | None = None

    def wait(self, now: float) -> float:
        """Seconds until the next start is allowed (0: now)."""
        if not self.per_minute or self.last_start is None:
            return 0.0
        return max(0.0, self.last_start + 60.0 / self.per_minute - now)

    def start(self, now: float) -> None:
        """Record a start at `now`."""
        self.last_start = now


def source_pace(chosen: float, source_default: float | None) -> Pace:
    """The pace a universe keeps: `chosen` requests a minute, or with NO_PACE the source's own default."""
    return Pace(chosen if chosen > NO_PACE else source_default)
