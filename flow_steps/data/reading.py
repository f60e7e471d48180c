"""Reading a price file: bytes -> a table, its date and price columns found, every date read with one format.

Pure: no MLflow, no files, no network. The checks that make the prices trustworthy, and the cleaning,
are in data/ingest.py.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flow_steps.config.declarations import AUTO_DATE_FORMAT
from flow_steps.config.errors import DataValidationError


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of `data`: how a price file is named in lineage tags and reuse keys."""
    return hashlib.sha256(data).hexdigest()


DATE_COLUMN_NAMES = ("Date", "Timestamp", "Day")
# Adjusted closes account for splits and dividends: a split is not a crash.
ADJUSTED_CLOSE_NAMES = ("Adj Close", "Adj. Close", "Adj_Close", "Adjusted Close", "AdjClose")
CLOSE_NAMES = ("Close",)
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
        _first_unreadable(values, column, date_format, f"date_format '{date_format}'")
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


def _first_line(text: str, limit: int) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."
