"""Ingest and cleaning: a price file's bytes -> a checked `Date, Close` table, oldest first.

Pure: nothing here touches MLflow, files or the network. `load_prices` is the one helper that every
command, benchmark and test uses to turn a price file into clean prices.
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flow_steps.config.declarations import AUTO_DATE_FORMAT, FAIL_ON_SUSPECT_MOVE, MAX_ROW_LIMIT
from flow_steps.config.errors import DataValidationError, SourceError
from flow_steps.config.names import DATE_COLUMN, PRICE_COLUMN
from flow_steps.config.values import DEFAULT_CHECKS, PriceChecks

DATE_COLUMN_NAMES = ("Date", "Timestamp", "Day")
# Adjusted closes account for splits and dividends: a split is not a crash.
ADJUSTED_CLOSE_NAMES = ("Adj Close", "Adj. Close", "Adj_Close", "Adjusted Close", "AdjClose")
CLOSE_NAMES = ("Close",)
MAX_MISSING_SHARE = 0.05
ISO_DATES = "ISO8601"
# Date formats of common exports, tried when a column is not ISO 8601. A column is read with one format
# only; when several read every row, the file is ambiguous and date_format must say which.
EXPORT_DATE_FORMATS = (
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%d.%m.%Y",
    "%d-%m-%Y",
    "%m-%d-%Y",
    "%Y/%m/%d",
    "%Y.%m.%d",
    "%Y%m%d",
    "%d-%b-%Y",
    "%d %b %Y",
    "%b %d, %Y",
    "%m/%d/%y",
    "%d/%m/%y",
)
SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "'|'"}
READ_SEPARATORS = (",", ";", "\t")
DECIMAL_COMMA = re.compile(r"^[+-]?(\d{1,3}(\.\d{3})+|\d+)(,\d+)?$")


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
    separator = detect_separator(stripped, source_name)
    try:
        frame = pd.read_csv(io.StringIO(text), sep=separator, dtype=str, skipinitialspace=True)
    except pd.errors.ParserError as error:
        raise DataValidationError(f"{source_name} is not a readable CSV file: {error}") from error
    frame.columns = [str(column).strip() for column in frame.columns]
    if frame.empty:
        raise DataValidationError(f"{source_name} has a header ({', '.join(frame.columns)}) but no data rows")
    if separator != ",":
        frame = frame.apply(_decimal_commas)
    return frame


def detect_separator(text: str, source_name: str) -> str:
    """The header row's field separator: comma, semicolon or tab; another one is refused by name."""
    header = text.splitlines()[0]
    counts = {separator: header.count(separator) for separator in SEPARATOR_NAMES}
    separator = max(counts, key=counts.get)
    if counts[separator] == 0:
        return ","
    if separator not in READ_SEPARATORS:
        raise DataValidationError(
            f"{source_name} separates its fields with {SEPARATOR_NAMES[separator]}: only comma-, "
            "semicolon- or tab-separated files are read"
        )
    return separator


def _decimal_commas(column: pd.Series) -> pd.Series:
    """Numbers written with decimal commas (and dots between thousands), as semicolon exports write them."""
    values = column.dropna()
    if values.empty or not values.str.contains(",").any() or not values.str.match(DECIMAL_COMMA).all():
        return column
    return column.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)


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


def resolve_date_format(values: pd.Series, column: str, date_format: str = AUTO_DATE_FORMAT) -> str:
    """The one format that reads every date of the column.

    ISO 8601 first; otherwise the export formats that read every row into distinct dates. A column
    that more than one of them reads (all days 12 or less, say) is refused as ambiguous: the
    `date_format` parameter settles it. A given `date_format` must read every row.
    """
    present = pd.Series(values.dropna().unique())
    if date_format != AUTO_DATE_FORMAT:
        _first_unreadable(present, column, date_format, f"date_format '{date_format}'")
        return date_format
    if present.empty or _reads_every_date(present, ISO_DATES):
        return ISO_DATES
    fitting = [fmt for fmt in EXPORT_DATE_FORMATS if _reads_every_date(present, fmt)]
    if len(fitting) == 1:
        return fitting[0]
    if len(fitting) > 1:
        example = _differing_example(present, fitting[:2])
        first, second = (pd.to_datetime(example, format=fmt).date() for fmt in fitting[:2])
        raise DataValidationError(
            f"column '{column}' has dates that read two ways: '{example}' is {first} as {fitting[0]} and "
            f"{second} as {fitting[1]}; set date_format (e.g. date_format={fitting[1]}) to say which"
        )
    closest = max((ISO_DATES, *EXPORT_DATE_FORMATS), key=lambda fmt: _count_read(present, fmt))
    _first_unreadable(values, column, closest, f"{closest}, the format of its other dates")
    # Every value reads, but two different spellings give the same date: one day written twice.
    parsed = _to_dates(present, closest)
    first, second = present[parsed.duplicated(keep=False)].iloc[:2]
    raise DataValidationError(
        f"column '{column}' writes one date two ways: '{first}' and '{second}' are both "
        f"{pd.to_datetime(first, format=closest).date()} as {closest}; each day must appear once"
    )


def parse_dates(values: pd.Series, column: str, date_format: str = ISO_DATES) -> pd.Series:
    """Parse a date column with one format; missing cells become NaT, a bad one raises naming the first."""
    parsed = _to_dates(values, date_format)
    _first_unreadable(values, column, date_format, f"format {date_format}", parsed)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    return parsed.dt.normalize()


def _to_dates(values: pd.Series, date_format: str) -> pd.Series:
    return pd.to_datetime(values, errors="coerce", format=date_format, utc=date_format == ISO_DATES)


def _reads_every_date(values: pd.Series, date_format: str) -> bool:
    parsed = _to_dates(values, date_format)
    return bool(parsed.notna().all()) and not parsed.duplicated().any()


def _count_read(values: pd.Series, date_format: str) -> int:
    return int(_to_dates(values, date_format).notna().sum())


def _differing_example(values: pd.Series, formats: list[str]) -> str:
    """A value the two formats read as different dates (the first one if none)."""
    first, second = (_to_dates(values, fmt) for fmt in formats)
    differ = (first != second).to_numpy()
    return str(values[differ].iloc[0] if differ.any() else values.iloc[0])


def _first_unreadable(
    values: pd.Series, column: str, date_format: str, described: str, parsed: pd.Series | None = None
) -> None:
    parsed = _to_dates(values, date_format) if parsed is None else parsed
    if (position := _first_unparsed(values, parsed)) is not None:
        raise DataValidationError(
            f"column '{column}' has a date that does not parse with {described}: '{values.iloc[position]}' "
            f"(data row {position + 1})"
        )


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


def summarize_raw(raw: pd.DataFrame, date_format: str = ISO_DATES) -> RawSummary:
    """Rows and first/last date (in date order, whatever the file's order) of a raw table."""
    dates = parse_dates(raw[date_column(raw)], date_column(raw), date_format).dropna()
    if dates.empty:
        raise DataValidationError(f"column '{date_column(raw)}' holds no dates")
    return RawSummary(
        rows=len(raw),
        first_date=dates.min().date().isoformat(),
        last_date=dates.max().date().isoformat(),
    )


def clean_prices(
    raw: pd.DataFrame, max_row_limit: int | None = None, checks: PriceChecks = DEFAULT_CHECKS
) -> tuple[pd.DataFrame, CleaningReport]:
    """Turn a raw price table into `Date, Close`, oldest first, one row per date.

    Reads every date with one format (`checks.date_format`), uses the adjusted close when there is
    one, drops rows with a missing date or price (refusing more than 5%), drops exact duplicate
    dates, refuses conflicting duplicates, non-positive prices and gaps longer than
    `checks.max_gap_days`, finds suspect moves, and keeps the most recent `max_row_limit` rows.
    """
    if max_row_limit is not None:
        MAX_ROW_LIMIT.check(max_row_limit)
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

    largest_gap = _check_gaps(frame[DATE_COLUMN], checks.max_gap_days)
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
    )
    return frame, report


def _check_gaps(dates: pd.Series, max_gap_days: int) -> int:
    """The longest gap in calendar days between consecutive (sorted) dates; refuse one over the limit."""
    if len(dates) < 2:
        return 0
    gaps = dates.diff().dt.days.to_numpy()[1:]
    at = int(np.argmax(gaps))
    if gaps[at] > max_gap_days:
        raise DataValidationError(
            f"no prices between {dates.iloc[at].date()} and {dates.iloc[at + 1].date()} "
            f"({int(gaps[at])} days, more than max_gap_days={max_gap_days}): windows would straddle it as "
            "if it were one day; use a complete series, or raise max_gap_days if the market was closed"
        )
    return int(gaps[at])


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


def _first_line(text: str, limit: int) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


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
