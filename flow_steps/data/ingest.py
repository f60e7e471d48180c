"""Ingest and cleaning: a price file's bytes -> a checked `Date, Close` table, oldest first.

Pure: nothing here touches MLflow, files or the network (reading a file is runtime/inputs.py's). The
file is read by data/reading.py; here the prices are checked (missing values, duplicates, gaps, suspect
moves) and cleaned. `load_prices` is the one helper every command, benchmark and test uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from flow_steps.config.calendars import NO_CALENDAR
from flow_steps.config.declarations import FAIL_ON_SUSPECT_MOVE
from flow_steps.config.errors import DataValidationError
from flow_steps.config.names import DATE_COLUMN, PRICE_COLUMN
from flow_steps.config.values import DEFAULT_CHECKS, PriceChecks
from flow_steps.data.reading import (
    CLOSE_NAMES,
    ISO_DATES,
    date_column,
    decode_csv,
    parse_dates,
    parse_prices,
    price_column,
    read_price_table,
    resolve_date_format,
)
from flow_steps.data.sessions import Hole, SessionCheck, check_sessions

MAX_MISSING_SHARE = 0.05


@dataclass(frozen=True)
class SuspectMove:
    """A one-day move beyond `max_daily_move` in a series that has no adjusted close."""

    date: str
    before: float
    after: float

    @property
    def change(self) -> float:
        return self.after / self.before - 1

    def describe(self) -> str:
        return f"{self.date} ({self.before:g} -> {self.after:g}, {self.change:+.1%})"


@dataclass(frozen=True)
class CleaningReport:
    """What clean_prices did to the raw rows, for logging."""

    rows_in: int
    price_column: str
    newest_first: bool
    missing_dropped: int
    duplicates_dropped: int
    limit_dropped: int
    rows_out: int
    date_format: str
    adjusted: bool
    largest_gap_days: int
    largest_daily_move: float
    suspect_moves: tuple[SuspectMove, ...]
    calendar: str = NO_CALENDAR
    session_holes: tuple[Hole, ...] = ()  # largest first; none with calendar=none
    non_session_dates: tuple[str, ...] = ()  # prices dated on days the exchange was closed

    @property
    def largest_gap_sessions(self) -> int:
        return self.session_holes[0].sessions if self.session_holes else 0

    def as_dict(self) -> dict[str, int | str | bool]:
        return asdict(self)


def clean_prices(
    raw: pd.DataFrame, max_row_limit: int | None = None, checks: PriceChecks = DEFAULT_CHECKS
) -> tuple[pd.DataFrame, CleaningReport]:
    """Turn a raw price table into `Date, Close`, oldest first, one row per date.

    Reads every date with one format (`checks.date_format`), uses the adjusted close when there is
    one, drops rows with a missing date or price (refusing more than 5%), drops exact duplicate
    dates, refuses conflicting duplicates, non-positive prices and holes of more than
    `checks.max_gap_sessions` sessions of `checks.calendar` (with no calendar, gaps of more than
    `checks.max_gap_days` days), finds shorter holes, prices on non-sessions and suspect moves, and keeps
    the most recent `max_row_limit` rows.
    """
    dates_name, prices_name = date_column(raw), price_column(raw)
    date_format = resolve_date_format(raw[dates_name], dates_name, checks.date_format)
    frame = pd.DataFrame(
        {
            DATE_COLUMN: parse_dates(raw[dates_name], dates_name, date_format).to_numpy(),
            PRICE_COLUMN: parse_prices(raw[prices_name], prices_name).to_numpy(),
        }
    )
    rows_in = len(frame)
    newest_first = bool(frame[DATE_COLUMN].dropna().is_monotonic_decreasing) and rows_in > 1

    missing = frame.isna().any(axis=1)
    if missing.mean() > MAX_MISSING_SHARE:
        raise DataValidationError(
            f"{int(missing.sum())} of {rows_in} rows ({missing.mean():.0%}) miss a date or a "
            f"'{prices_name}' value; at most {MAX_MISSING_SHARE:.0%} may be missing"
        )
    frame = frame.loc[~missing]

    non_positive = frame[PRICE_COLUMN] <= 0
    if non_positive.any():
        first = frame.loc[non_positive].iloc[0]
        raise DataValidationError(
            f"column '{prices_name}' has a non-positive price {first[PRICE_COLUMN]:g} "
            f"on {first[DATE_COLUMN].date()}"
        )

    frame = frame.sort_values(DATE_COLUMN, kind="stable")
    exact_duplicates = frame.duplicated(keep="first")
    frame = frame.loc[~exact_duplicates]
    conflicting = frame[DATE_COLUMN].duplicated(keep=False)
    if conflicting.any():
        clash = frame.loc[conflicting]
        day = clash[DATE_COLUMN].iloc[0]
        prices = clash.loc[clash[DATE_COLUMN] == day, PRICE_COLUMN].tolist()
        raise DataValidationError(
            f"date {day.date()} appears more than once with different '{prices_name}' values: "
            f"{', '.join(f'{price:g}' for price in prices)}"
        )

    largest_gap = _largest_gap_days(frame[DATE_COLUMN], checks)
    sessions = _check_session_holes(frame[DATE_COLUMN], checks)
    adjusted = prices_name not in CLOSE_NAMES
    largest_move, suspects = daily_moves(frame, checks.max_daily_move)
    if suspects and not adjusted and checks.on_suspect_move == FAIL_ON_SUSPECT_MOVE:
        raise DataValidationError(suspect_move_message(suspects, prices_name) + " (on_suspect_move=fail)")

    rows_before_limit = len(frame)
    if max_row_limit is not None:
        frame = frame.tail(max_row_limit)
    frame = frame.reset_index(drop=True)
    report = CleaningReport(
        rows_in=rows_in,
        price_column=prices_name,
        newest_first=newest_first,
        missing_dropped=int(missing.sum()),
        duplicates_dropped=int(exact_duplicates.sum()),
        limit_dropped=rows_before_limit - len(frame),
        rows_out=len(frame),
        date_format=date_format,
        adjusted=adjusted,
        largest_gap_days=largest_gap,
        largest_daily_move=largest_move,
        suspect_moves=() if adjusted else suspects,
        calendar=checks.calendar,
        session_holes=sessions.holes,
        non_session_dates=sessions.non_sessions,
    )
    return frame, report


def _largest_gap_days(dates: pd.Series, checks: PriceChecks) -> int:
    """The longest gap in calendar days between consecutive (sorted) dates; with no calendar, refuse one
    over `max_gap_days`."""
    if len(dates) < 2:
        return 0
    gaps = dates.diff().dt.days.to_numpy()[1:]
    at = int(np.argmax(gaps))
    if checks.calendar == NO_CALENDAR and gaps[at] > checks.max_gap_days:
        raise DataValidationError(
            f"no prices between {dates.iloc[at].date()} and {dates.iloc[at + 1].date()} "
            f"({int(gaps[at])} days, more than max_gap_days={checks.max_gap_days}): windows would straddle "
            "it as if it were one day; use a complete series, or raise max_gap_days if the market was closed"
        )
    return int(gaps[at])


def _check_session_holes(dates: pd.Series, checks: PriceChecks) -> SessionCheck:
    """Holes in the calendar's sessions and prices on its non-sessions; refuse a hole over the limit."""
    if checks.calendar == NO_CALENDAR:
        return SessionCheck((), ())
    found = check_sessions(dates, checks.calendar)
    if found.largest_hole > checks.max_gap_sessions:
        hole = found.holes[0]
        raise DataValidationError(
            f"no prices for {hole.sessions} sessions of {checks.calendar} between {hole.before} and "
            f"{hole.after} (more than max_gap_sessions={checks.max_gap_sessions}): windows would straddle "
            f"it as if it were one day; use a complete series, or check that calendar={checks.calendar} is "
            "the exchange of these prices"
        )
    return found


def daily_moves(prices: pd.DataFrame, limit: float) -> tuple[float, tuple[SuspectMove, ...]]:
    """The largest absolute one-day change of sorted prices, and every move beyond `limit`, largest first."""
    closes = prices[PRICE_COLUMN].to_numpy(dtype=float)
    if len(closes) < 2:
        return 0.0, ()
    changes = closes[1:] / closes[:-1] - 1
    beyond = np.flatnonzero(np.abs(changes) > limit)
    moves = tuple(
        SuspectMove(
            prices[DATE_COLUMN].iloc[i + 1].date().isoformat(), float(closes[i]), float(closes[i + 1])
        )
        for i in beyond[np.argsort(-np.abs(changes[beyond]), kind="stable")]
    )
    return float(np.max(np.abs(changes))), moves


def suspect_move_message(moves: tuple[SuspectMove, ...], column: str) -> str:
    """One line naming the largest suspect move, how many there are, and what they may be."""
    others = f" and {len(moves) - 1} more" if len(moves) > 1 else ""
    return (
        f"'{column}' moved {moves[0].change:+.1%} in one day on {moves[0].describe()}{others}, and the file "
        "has no adjusted close: an unadjusted split, a data error or a real crash; prefer a source with "
        "adjusted closes"
    )


def validate_prepared(frame: pd.DataFrame, source_name: str) -> pd.DataFrame:
    """Check the transform step's contract: `Date, Close`, dates strictly ascending, prices > 0."""
    missing = [name for name in (DATE_COLUMN, PRICE_COLUMN) if name not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{source_name} lacks column(s) {', '.join(missing)}; found: {', '.join(frame.columns)}"
        )
    dates = parse_dates(frame[DATE_COLUMN], DATE_COLUMN, ISO_DATES)
    prices = parse_prices(frame[PRICE_COLUMN], PRICE_COLUMN)
    if dates.isna().any() or prices.isna().any():
        raise DataValidationError(f"{source_name} has empty cells: run transform_data on it first")
    if not dates.is_monotonic_increasing or dates.duplicated().any():
        raise DataValidationError(
            f"{source_name} is not in strictly ascending date order: run transform_data on it first"
        )
    if (prices <= 0).any():
        raise DataValidationError(f"{source_name} has non-positive prices")
    return pd.DataFrame({DATE_COLUMN: dates, PRICE_COLUMN: prices})


@dataclass(frozen=True)
class PriceFile:
    """A price file read and cleaned: its table as read (strings), the clean prices, what cleaning did."""

    table: pd.DataFrame
    prices: pd.DataFrame
    report: CleaningReport


def load_prices(
    content: bytes, source_name: str, max_row_limit: int | None = None, checks: PriceChecks = DEFAULT_CHECKS
) -> PriceFile:
    """Decode, read, check and clean a raw price file (the one path from bytes to clean prices)."""
    table = read_price_table(decode_csv(content, source_name), source_name)
    prices, report = clean_prices(table, max_row_limit, checks)
    return PriceFile(table, prices, report)
