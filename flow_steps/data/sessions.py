"""Exchange trading sessions (exchange-calendars): the days a price file should have, and the next ones.

Pure: the holiday rules ship with the package, nothing is fetched. `calendar` is an exchange code
(config/calendars.py checks it) or NO_CALENDAR for plain weekdays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import exchange_calendars
import numpy as np
import pandas as pd

from flow_steps.config.calendars import NO_CALENDAR

logger = logging.getLogger(__name__)

ONE_DAY = pd.Timedelta(days=1)
NO_BOUND = None  # weekdays have no first day


@dataclass(frozen=True)
class Hole:
    """Consecutive sessions of the calendar without a price, between two prices (ISO dates)."""

    before: str
    after: str
    sessions: int

    def describe(self) -> str:
        plural = "s" if self.sessions != 1 else ""
        return f"{self.sessions} session{plural} between {self.before} and {self.after}"


@dataclass(frozen=True)
class SessionCheck:
    """How sorted price dates meet the calendar's sessions from the first price to the last."""

    holes: tuple[Hole, ...]  # largest first
    non_sessions: tuple[str, ...]  # prices dated on days the exchange was closed (ISO), oldest first

    @property
    def largest_hole(self) -> int:
        return self.holes[0].sessions if self.holes else 0

    @property
    def missing_sessions(self) -> int:
        return sum(hole.sessions for hole in self.holes)


@lru_cache(maxsize=16)
def _calendar(calendar: str, start: pd.Timestamp, end: pd.Timestamp) -> exchange_calendars.ExchangeCalendar:
    return exchange_calendars.get_calendar(calendar, start=start, end=end)


def sessions_between(calendar: str, first: pd.Timestamp, last: pd.Timestamp) -> pd.DatetimeIndex:
    """The sessions from `first` to `last`, both included; any span the rules cover, past or future."""
    first, last = pd.Timestamp(first).normalize(), pd.Timestamp(last).normalize()
    if calendar == NO_CALENDAR:
        return pd.bdate_range(first, last)
    try:
        sessions = _calendar(calendar, first, last).sessions  # its first and last sessions fall inside
    except exchange_calendars.errors.NoSessionsError:  # a weekend, a holiday: no session in the span
        return pd.DatetimeIndex([])
    return sessions[(sessions >= first) & (sessions <= last)]


def next_sessions(calendar: str, after: pd.Timestamp, count: int) -> pd.DatetimeIndex:
    """The first `count` sessions after the day `after`, however far ahead they run."""
    start = pd.Timestamp(after).normalize() + ONE_DAY
    days = 2 * count + 14  # a few weeks more than `count` weekdays: then doubled if holidays ate them
    while len(sessions := sessions_between(calendar, start, start + pd.Timedelta(days=days))) < count:
        days *= 2
    return sessions[:count]


def session_closes(calendar: str, days: pd.DatetimeIndex) -> pd.Series:
    """The close (UTC) of each day that is a session of `calendar`; NaT for the others."""
    days = pd.DatetimeIndex(days).normalize()
    exchange = exchange_calendars.get_calendar(calendar)
    within = (days >= exchange.first_session) & (days <= exchange.last_session)
    if not within.all():  # outside the default span: a calendar over exactly these days
        bound = exchange.bound_min()
        exchange = _calendar(calendar, days.min() if bound is None else max(days.min(), bound), days.max())
    return pd.Series(exchange.closes.reindex(days).to_numpy(), index=range(len(days)))


def check_sessions(dates: pd.Series, calendar: str) -> SessionCheck:
    """The holes (sessions without a price) and the prices on non-sessions of sorted, distinct dates."""
    days = pd.DatetimeIndex(dates).normalize()
    earliest = NO_BOUND if calendar == NO_CALENDAR else exchange_calendars.get_calendar(calendar).bound_min()
    if earliest is not None and len(days) and days[0] < earliest:
        logger.warning(
            "Prices before %s are not checked against %s: its rules start there",
            f"{earliest:%Y-%m-%d}",
            calendar,
        )
        days = days[days >= earliest]
    if len(days) < 2:
        return SessionCheck((), ())
    sessions = sessions_between(calendar, days[0], days[-1])
    off = days[~days.isin(sessions)]
    # Sessions strictly between each price and the next one: a hole when there are any.
    missing = sessions.searchsorted(days[1:], side="left") - sessions.searchsorted(days[:-1], side="right")
    found = np.flatnonzero(missing > 0)
    holes = tuple(
        Hole(f"{days[at]:%Y-%m-%d}", f"{days[at + 1]:%Y-%m-%d}", int(missing[at]))
        for at in found[np.argsort(-missing[found], kind="stable")]
    )
    return SessionCheck(holes, tuple(f"{day:%Y-%m-%d}" for day in off))


def describe_non_sessions(dates: tuple[str, ...], calendar: str, shown: int = 3) -> str:
    """'2 prices dated on days XNYS was closed: 2016-12-24, 2016-12-25'."""
    more = f" and {len(dates) - shown} more" if len(dates) > shown else ""
    return (
        f"{len(dates)} price{'s' if len(dates) != 1 else ''} dated on days {calendar} was closed: "
        f"{', '.join(dates[:shown])}{more}"
    )
