"""Ingest and cleaning on small hand-made frames."""

import pandas as pd
import pytest

from flow_steps.config.errors import DataValidationError
from flow_steps.data.ingest import MAX_MISSING_SHARE, clean_prices
from flow_steps.data.reading import price_column, read_price_table, summarize_raw


def raw(rows: list[tuple[str, str]], columns=("Date", "Close")) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns), dtype=str)


def test_newest_first_input_comes_out_oldest_first():
    frame = raw([("2020-01-03", "3"), ("2020-01-02", "2"), ("2020-01-01", "1")])
    prepared, report = clean_prices(frame)
    assert prepared["Date"].dt.strftime("%Y-%m-%d").tolist() == ["2020-01-01", "2020-01-02", "2020-01-03"]
    assert prepared["Close"].tolist() == [1.0, 2.0, 3.0]
    assert report.newest_first


def test_shuffled_dates_are_sorted():
    frame = raw([("2020-01-02", "2"), ("2020-01-03", "3"), ("2020-01-01", "1")])
    prepared, report = clean_prices(frame)
    assert prepared["Close"].tolist() == [1.0, 2.0, 3.0]
    assert not report.newest_first


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["Date", "Open", "Close", "Adj Close"], "Adj Close"),
        (["Date", "Close", "Adj. Close"], "Adj. Close"),
        (["Date", "Close", "Adj_Close", "Adj_Open"], "Adj_Close"),
        (["Date", "Open", "High", "Low", "Close", "Volume"], "Close"),
        (["date", "close"], "close"),
    ],
)
def test_adjusted_close_is_preferred(columns, expected):
    assert price_column(pd.DataFrame(columns=columns)) == expected


def test_adjusted_close_values_are_used():
    frame = raw([("2020-01-01", "100", "50"), ("2020-01-02", "102", "51")], ("Date", "Close", "Adj Close"))
    prepared, report = clean_prices(frame)
    assert prepared["Close"].tolist() == [50.0, 51.0]
    assert report.price_column == "Adj Close"
    assert list(prepared.columns) == ["Date", "Close"]


def test_exact_duplicate_dates_are_dropped_and_counted():
    frame = raw([("2020-01-01", "1"), ("2020-01-02", "2"), ("2020-01-02", "2"), ("2020-01-03", "3")])
    prepared, report = clean_prices(frame)
    assert prepared["Close"].tolist() == [1.0, 2.0, 3.0]
    assert report.duplicates_dropped == 1


def test_duplicate_dates_with_different_prices_are_refused():
    frame = raw([("2020-01-01", "1"), ("2020-01-02", "2"), ("2020-01-02", "2.5")])
    with pytest.raises(DataValidationError, match=r"2020-01-02 .*different 'Close' values: 2, 2.5"):
        clean_prices(frame)


def test_max_row_limit_keeps_the_most_recent_rows():
    frame = raw([(f"2020-01-{day:02d}", str(day)) for day in range(10, 0, -1)])
    prepared, report = clean_prices(frame, max_row_limit=3)
    assert prepared["Close"].tolist() == [8.0, 9.0, 10.0]
    assert (report.rows_in, report.rows_out, report.limit_dropped) == (10, 3, 7)


def test_missing_values_are_dropped_and_counted():
    rows = [(f"2020-01-{day:02d}", str(day)) for day in range(1, 31)]
    rows[5] = ("2020-01-06", "NA")
    frame = read_price_table("Date,Close\n" + "\n".join(f"{d},{p}" for d, p in rows), "prices.csv")
    prepared, report = clean_prices(frame)
    assert report.missing_dropped == 1
    assert len(prepared) == 29


def test_too_many_missing_values_are_refused():
    frame = raw([("2020-01-01", "1"), ("2020-01-02", None), ("2020-01-03", "3")])
    assert MAX_MISSING_SHARE < 1 / 3
    with pytest.raises(DataValidationError, match="1 of 3 rows"):
        clean_prices(frame)


def test_non_numeric_price_names_row_and_value():
    frame = raw([("2020-01-01", "1"), ("2020-01-02", "abc")])
    with pytest.raises(DataValidationError, match=r"'Close' .*'abc' \(data row 2\)"):
        clean_prices(frame)


def test_unparseable_date_names_the_value():
    frame = raw([("2020-01-01", "1"), ("yesterday", "2")])
    with pytest.raises(DataValidationError, match="'yesterday'"):
        clean_prices(frame)


def test_non_positive_price_is_refused():
    frame = raw([("2020-01-01", "1"), ("2020-01-02", "0")])
    with pytest.raises(DataValidationError, match="non-positive price 0 on 2020-01-02"):
        clean_prices(frame)


def test_missing_columns_name_what_was_found():
    with pytest.raises(DataValidationError, match="no date column.*found columns: When, Close"):
        clean_prices(raw([("2020-01-01", "1")], ("When", "Close")))
    with pytest.raises(DataValidationError, match="no price column.*found columns: Date, Open"):
        clean_prices(raw([("2020-01-01", "1")], ("Date", "Open")))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("<!DOCTYPE html><html><body>Not found</body></html>", "HTML"),
        ('{"quandl_error": {"code": "QECx02"}}', "JSON"),
        ("Date,Close\n", "no data rows"),
    ],
)
def test_unusable_files_are_refused(text, message):
    with pytest.raises(DataValidationError, match=message):
        read_price_table(text, "prices.csv")


def test_summary_reports_rows_and_date_range_in_date_order():
    summary = summarize_raw(raw([("2020-01-03", "3"), ("2020-01-01", "1"), ("2020-01-02", "2")]))
    assert (summary.rows, summary.first_date, summary.last_date) == (3, "2020-01-01", "2020-01-03")
