"""Only closes that have happened: "now" (`as_of`) and the bars a price file may not yet hold.

A bar is a close once its session has closed: exchange-calendars' session close for a session of the
calendar; the end of the day (midnight UTC after it) for a day that is not one, or with no calendar.
Every bar whose close is after "now" is dropped, whatever the source: a source answering during trading
hours sends today's bar, and `as_of` in the past replays a day as it was. Pure: the clock is an argument.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pandas as pd

from flow_steps.config.calendars import NO_CALENDAR
from flow_steps.config.errors import DataValidationError
from flow_steps.data.reading import (
    date_column,
    decode_csv,
    parse_dates,
    read_price_table,
    resolve_date_format,
)
from flow_steps.data.sessions import session_closes

logger = logging.getLogger(__name__)

# Every session of every exchange closes within this time after its day began (UTC): older bars are closes.
SURELY_CLOSED = pd.Timedelta(days=2)


@dataclass(frozen=True)
class Cut:
    """A price file without the bars that were not closes at `now`, and which ones were dropped."""

    content: bytes
    now: pd.Timestamp
    dropped: tuple[str, ...]  # ISO dates of the dropped bars, oldest first


def closing_times(days: pd.DatetimeIndex, calendar: str) -> pd.DatetimeIndex:
    """When each day's bar became a close (UTC): its session's close, else the end of the day."""
    days = pd.DatetimeIndex(days).normalize()
    ends = (days + pd.Timedelta(days=1)).tz_localize("UTC")
    if calendar == NO_CALENDAR or len(days) == 0:
        return ends
    closes = session_closes(calendar, days)
    return pd.DatetimeIndex(closes.where(closes.notna(), ends))


def closed(days: pd.DatetimeIndex, calendar: str, now: pd.Timestamp) -> pd.Series:
    """True for each day whose bar was a close at `now` (days long past are, without asking the calendar)."""
    days = pd.DatetimeIndex(days).normalize()
    result = pd.Series(days.tz_localize("UTC") + SURELY_CLOSED <= now, index=range(len(days)))
    recent = ~result & days.notna()
    if recent.any():
        result[recent] = closing_times(days[recent.to_numpy()], calendar) <= now
    return result


def cut_unclosed(content: bytes, source_name: str, date_format: str, calendar: str, now: pd.Timestamp) -> Cut:
    """`content` without the bars that were not closes at `now`; the other lines kept byte for byte."""
    table = read_price_table(decode_csv(content, source_name), source_name)
    name = date_column(table)
    dates = parse_dates(table[name], name, resolve_date_format(table[name], name, date_format))
    keep = closed(pd.DatetimeIndex(dates), calendar, now) | dates.isna().to_numpy()
    if keep.all():
        return Cut(content, now, ())
    if not keep.any():
        raise DataValidationError(
            f"{source_name} has no close by {now:%Y-%m-%d %H:%M} UTC (as_of): its first bar is of "
            f"{dates.min():%Y-%m-%d}"
        )
    dropped = tuple(sorted(f"{day:%Y-%m-%d}" for day in dates[~keep.to_numpy()]))
    logger.info(
        "Dropped %d bar%s not closed at %s (%s): %s",
        len(dropped),
        "s" if len(dropped) != 1 else "",
        f"{now:%Y-%m-%d %H:%M} UTC",
        f"sessions of {calendar}" if calendar != NO_CALENDAR else "days",
        ", ".join(dropped[:3]) + (f" and {len(dropped) - 3} more" if len(dropped) > 3 else ""),
    )
    return Cut(_without_rows(content, table, keep.to_numpy()), now, dropped)


def _without_rows(content: bytes, table: pd.DataFrame, keep: pd.Series) -> bytes:
    """The file's lines minus the data rows not kept: the source's bytes, not a rewrite."""
    text = decode_csv(content, "")
    lines = text.splitlines(keepends=True)
    header_at = next(at for at, line in enumerate(lines) if line.strip())
    rows = [at for at in range(header_at + 1, len(lines)) if lines[at].strip()]
    if len(rows) != len(table):  # quoted line breaks: rows are not lines; write the table again
        return table.loc[keep].to_csv(index=False).encode()
    dropped = {row for row, kept in zip(rows, keep, strict=True) if not kept}
    prefix = "\ufeff" if content.startswith(b"\xef\xbb\xbf") else ""
    return (prefix + "".join(line for at, line in enumerate(lines) if at not in dropped)).encode()
