"""Ingest and cleaning: a price file's bytes -> a checked `Date, Close` table, oldest first.

Pure: nothing here touches MLflow, files or the network. `load_prices` is the one helper that every
command, benchmark and test uses to turn a price file into clean prices.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flow_steps.constants import DATE_COLUMN, PRICE_COLUMN
from flow_steps.errors import DataValidationError, SourceError

DATE_COLUMN_NAMES = ("Date", "Timestamp", "Day")
# Adjusted closes account for splits and dividends: a split is not a crash.
ADJUSTED_CLOSE_NAMES = ("Adj Close", "Adj. Close", "Adj_Close", "Adjusted Close", "AdjClose")
CLOSE_NAMES = ("Close",)
MAX_MISSING_SHARE = 0.05


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

    def as_dict(self) -> dict[str, int | str | bool]:
        return asdict(self)


@dataclass(frozen=True)
class RawSummary:
    """Rows and date range of a raw price table, as lineage for the download step."""

    rows: int
    first_date: str
    last_date: str


def decode_csv(content: bytes, source_name: str) -> str:
    """UTF-8 text of a price file (a byte-order mark is dropped)."""
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataValidationError(f"{source_name} is not UTF-8 text: {error}") from error


def read_price_table(text: str, source_name: str) -> pd.DataFrame:
    """Parse CSV text into a frame of strings; refuse empty input, HTML pages and JSON errors."""
    stripped = text.lstrip()
    if not stripped:
        raise DataValidationError(f"{source_name} is empty: expected a CSV file with a header row")
    if stripped[:1] in "{[":
        raise DataValidationError(f"{source_name} is JSON, not CSV: {_first_line(stripped, 160)}")
    if stripped[:1] == "<":
        raise DataValidationError(
            f"{source_name} is an HTML or XML page, not CSV: {_first_line(stripped, 80)}"
        )
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, skipinitialspace=True)
    except pd.errors.ParserError as error:
        raise DataValidationError(f"{source_name} is not a readable CSV file: {error}") from error
    frame.columns = [str(column).strip() for column in frame.columns]
    if frame.empty:
        raise DataValidationError(f"{source_name} has a header ({', '.join(frame.columns)}) but no data rows")
    return frame


def find_column(columns: list[str], candidates: tuple[str, ...]) -> str | None:
    """First of `candidates` present in `columns`, compared case-insensitively."""
    by_folded_name = {column.strip().casefold(): column for column in columns}
    for candidate in candidates:
        if candidate.casefold() in by_folded_name:
            return by_folded_name[candidate.casefold()]
    return None


def date_column(frame: pd.DataFrame) -> str:
    """The name of the date column; raises naming the columns found when there is none."""
    column = find_column(list(frame.columns), DATE_COLUMN_NAMES)
    if column is None:
        raise DataValidationError(
            f"no date column (expected one of {', '.join(DATE_COLUMN_NAMES)}); "
            f"found columns: {', '.join(map(str, frame.columns))}"
        )
    return column


def price_column(frame: pd.DataFrame) -> str:
    """The adjusted close when the source has one, else the close."""
    column = find_column(list(frame.columns), ADJUSTED_CLOSE_NAMES + CLOSE_NAMES)
    if column is None:
        raise DataValidationError(
            f"no price column (expected one of {', '.join(ADJUSTED_CLOSE_NAMES + CLOSE_NAMES)}); "
            f"found columns: {', '.join(map(str, frame.columns))}"
        )
    return column


def parse_dates(values: pd.Series, column: str) -> pd.Series:
    """Parse a date column; missing cells become NaT, unparseable ones raise naming the first."""
    parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    if (position := _first_unparsed(values, parsed)) is not None:
        raise DataValidationError(
            f"column '{column}' has a date that does not parse: '{values.iloc[position]}' "
            f"(data row {position + 1})"
        )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    return parsed.dt.normalize()


def parse_prices(values: pd.Series, column: str) -> pd.Series:
    """Parse a price column; missing cells become NaN, anything else not a number raises."""
    parsed = pd.to_numeric(values, errors="coerce")
    if (position := _first_unparsed(values, parsed)) is not None:
        raise DataValidationError(
            f"column '{column}' has a value that is not a number: '{values.iloc[position]}' "
            f"(data row {position + 1})"
        )
    return parsed.astype(float)


def _first_unparsed(values: pd.Series, parsed: pd.Series) -> int | None:
    """Position of the first cell that had a value but did not parse, if any."""
    bad = (parsed.isna() & values.notna()).to_numpy()
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def summarize_raw(raw: pd.DataFrame) -> RawSummary:
    """Rows and first/last date (in date order, whatever the file's order) of a raw table."""
    dates = parse_dates(raw[date_column(raw)], date_column(raw)).dropna()
    if dates.empty:
        raise DataValidationError(f"column '{date_column(raw)}' holds no dates")
    return RawSummary(
        rows=len(raw),
        first_date=dates.min().date().isoformat(),
        last_date=dates.max().date().isoformat(),
    )


def clean_prices(raw: pd.DataFrame, max_row_limit: int | None = None) -> tuple[pd.DataFrame, CleaningReport]:
    """Turn a raw price table into `Date, Close`, oldest first, one row per date.

    Uses the adjusted close when there is one. Drops rows with a missing date or price (refusing
    more than 5%), drops exact duplicate dates, refuses conflicting duplicates and non-positive
    prices, and keeps the most recent `max_row_limit` rows.
    """
    if max_row_limit is not None and max_row_limit < 1:
        raise DataValidationError(f"max_row_limit must be at least 1, got {max_row_limit}")
    dates_name, prices_name = date_column(raw), price_column(raw)
    frame = pd.DataFrame(
        {
            DATE_COLUMN: parse_dates(raw[dates_name], dates_name).to_numpy(),
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
    )
    return frame, report


def validate_prepared(frame: pd.DataFrame, source_name: str) -> pd.DataFrame:
    """Check the transform step's contract: `Date, Close`, dates strictly ascending, prices > 0."""
    missing = [name for name in (DATE_COLUMN, PRICE_COLUMN) if name not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{source_name} lacks column(s) {', '.join(missing)}; found: {', '.join(frame.columns)}"
        )
    dates = parse_dates(frame[DATE_COLUMN], DATE_COLUMN)
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


def _first_line(text: str, limit: int) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


@dataclass(frozen=True)
class PriceFile:
    """A price file read and cleaned: its table as read (strings), the clean prices, what cleaning did."""

    table: pd.DataFrame
    prices: pd.DataFrame
    report: CleaningReport


def load_prices(content: bytes, source_name: str, max_row_limit: int | None = None) -> PriceFile:
    """Decode, read and clean a raw price file (the one path from bytes to clean prices)."""
    table = read_price_table(decode_csv(content, source_name), source_name)
    prices, report = clean_prices(table, max_row_limit)
    return PriceFile(table, prices, report)


def input_file(path: str, parameter: str) -> Path:
    """`path` as a Path, refused unless it is a file; `parameter` names the option that gave it."""
    file = Path(path)
    if not file.is_file():
        raise SourceError(f"{parameter} '{path}' is not a file")
    return file


def read_prepared(path: str, parameter: str) -> pd.DataFrame:
    """The prepared prices transform_data wrote, checked."""
    file = input_file(path, parameter)
    return validate_prepared(pd.read_csv(file, dtype=str), file.name)
