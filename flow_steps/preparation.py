"""Pure data preparation: read, validate, order and window daily prices.

Nothing here touches MLflow, files or the network, so tests and the notebook call it directly.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from flow_steps.constants import DATE_COLUMN, PRICE_COLUMN
from flow_steps.errors import DataValidationError

DATE_COLUMN_NAMES = ("Date", "Timestamp", "Day")
# Adjusted closes account for splits and dividends: a split is not a crash.
ADJUSTED_CLOSE_NAMES = ("Adj Close", "Adj. Close", "Adj_Close", "Adjusted Close", "AdjClose")
CLOSE_NAMES = ("Close",)
MAX_MISSING_SHARE = 0.05
MIN_TRAIN_SAMPLES = 30
MIN_TEST_ROWS = 5


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


def holdout_size(n_rows: int, test_fraction: float) -> int:
    """Number of rows at the end of the series that form the test set."""
    if not 0 < test_fraction <= 0.5:
        raise DataValidationError(f"test_fraction must be in (0, 0.5], got {test_fraction}")
    return max(1, round(n_rows * test_fraction))


def minimum_rows(window: int, test_fraction: float) -> int:
    """Fewest rows that leave `MIN_TRAIN_SAMPLES` training windows and `MIN_TEST_ROWS` test days."""
    n_rows = window + MIN_TRAIN_SAMPLES + MIN_TEST_ROWS
    while not _enough_rows(n_rows, window, test_fraction):
        n_rows += 1
    return n_rows


def check_enough_rows(n_rows: int, window: int, test_fraction: float) -> None:
    """Raise naming the shortfall and the parameters to change when the series is too short."""
    if window < 1:
        raise DataValidationError(f"window must be at least 1, got {window}")
    if not _enough_rows(n_rows, window, test_fraction):
        raise DataValidationError(
            f"{n_rows} rows of prices, but window={window} and test_fraction={test_fraction} "
            f"need at least {minimum_rows(window, test_fraction)}: lower window, raise "
            "max_row_limit or use a longer price history"
        )


def _enough_rows(n_rows: int, window: int, test_fraction: float) -> bool:
    n_test = holdout_size(n_rows, test_fraction)
    return n_test >= MIN_TEST_ROWS and n_rows - n_test - window >= MIN_TRAIN_SAMPLES


def make_windows(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Sliding windows: X[i] = values[i : i + window], y[i] = values[i + window]."""
    values = np.asarray(values, dtype=float)
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    n_samples = len(values) - window
    if n_samples < 1:
        raise ValueError(f"{len(values)} values are too few for windows of {window}")
    windows = np.lib.stride_tricks.sliding_window_view(values, window)[:n_samples].copy()
    return windows, values[window:].copy()


def relative_log_prices(windows: np.ndarray) -> np.ndarray:
    """Each window's log prices relative to its last price: log(p / p_last), so the last is 0.

    This makes a window independent of the price level, so a model trained on prices of 20 to 40
    reads a window of prices around 300 the same way.
    """
    windows = np.asarray(windows, dtype=float)
    return np.log(windows) - np.log(windows[:, -1:])


def next_log_returns(windows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Log return from each window's last price to its target: log(target / p_last)."""
    windows = np.asarray(windows, dtype=float)
    return np.log(np.asarray(targets, dtype=float)) - np.log(windows[:, -1])


def _first_line(text: str, limit: int) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


@dataclass(frozen=True)
class ReturnScaler:
    """Divides log returns by their training-period standard deviation, so the LSTM sees unit scale.

    Fit on training targets only: the test period never shapes the preprocessing.
    """

    scale: float

    @classmethod
    def fit(cls, training_log_returns: np.ndarray) -> ReturnScaler:
        spread = float(np.std(np.asarray(training_log_returns, dtype=float)))
        return cls(scale=spread if np.isfinite(spread) and spread > 0 else 1.0)

    def transform(self, log_returns: np.ndarray) -> np.ndarray:
        return np.asarray(log_returns, dtype=float) / self.scale

    def inverse_transform(self, scaled: np.ndarray) -> np.ndarray:
        return np.asarray(scaled, dtype=float) * self.scale


def model_inputs(windows: np.ndarray, scaler: ReturnScaler) -> np.ndarray:
    """LSTM input for windows of raw closes: scaled relative log prices, shape (n, window, 1)."""
    return scaler.transform(relative_log_prices(windows))[..., np.newaxis]


def closes_from_scaled_returns(
    windows: np.ndarray, scaled_returns: np.ndarray, scaler: ReturnScaler
) -> np.ndarray:
    """Next-day closes from each window's last close and the model's scaled log return."""
    last_closes = np.asarray(windows, dtype=float)[:, -1]
    return last_closes * np.exp(scaler.inverse_transform(np.ravel(scaled_returns)))


def closes_from_input(model_input: pd.DataFrame, window: int) -> np.ndarray:
    """The chronological closes a served model was given, checked: column, length, values."""
    if not isinstance(model_input, pd.DataFrame) or PRICE_COLUMN not in model_input.columns:
        found = ", ".join(map(str, getattr(model_input, "columns", []))) or "none"
        raise DataValidationError(f"input needs a '{PRICE_COLUMN}' column; found columns: {found}")
    values = pd.to_numeric(model_input[PRICE_COLUMN], errors="coerce").to_numpy(dtype=float)
    if len(values) < window:
        raise DataValidationError(
            f"input has {len(values)} rows of '{PRICE_COLUMN}', the model needs at least {window}"
        )
    if not np.all(np.isfinite(values)):
        position = int(np.flatnonzero(~np.isfinite(values))[0])
        given = model_input[PRICE_COLUMN].iloc[position]
        if pd.isna(given):
            problem = "is missing"
        elif isinstance(given, (int, float, np.number)):
            problem = f"is not finite: {float(given):g}"
        else:
            problem = f"is not a number: {given!r}"
        raise DataValidationError(f"'{PRICE_COLUMN}' row {position} {problem}")
    if np.any(values <= 0):
        position = int(np.flatnonzero(values <= 0)[0])
        raise DataValidationError(f"'{PRICE_COLUMN}' row {position} is not positive: {values[position]:g}")
    return values
