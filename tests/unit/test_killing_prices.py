"""Reading and checking a price file (data/reading.py, data/ingest.py) and a ticker's refusal: what the
complete mutation run of 2026-12-06 found no fast test reaching. Each expected table, report and message is
written out by hand from the definitions: the exact wording of a refusal, the separator a header names,
the date format a summary reads with, the order of equal suspect moves, a cleaning report's fields and
the transform step's contract."""

import pandas as pd
import pytest

from flow_steps.config.errors import DataValidationError, PipelineError
from flow_steps.config.values import PriceChecks
from flow_steps.data.ingest import daily_moves, load_prices, validate_prepared
from flow_steps.data.reading import decode_csv, read_price_table, summarize_raw
from flow_steps.data.tickers import normalize_ticker

# Three sessions of XNYS (Tuesday to Thursday), moves of +5% and +4.8%: nothing to refuse.
THREE_DAYS = b"Date,Close\n2024-01-02,10.0\n2024-01-03,10.5\n2024-01-04,11.0\n"


def test_a_ticker_refused_says_what_a_ticker_may_hold():
    with pytest.raises(PipelineError) as raised:
        normalize_ticker("MS FT")
    assert str(raised.value) == (
        "company_abbreviation 'MS FT' is not a ticker symbol (letters, digits, '.', '_' or '-', at most 20)"
    )


def test_bytes_that_are_not_utf8_are_refused_by_the_files_name():
    with pytest.raises(DataValidationError, match=r"^prices\.csv is not UTF-8 text: "):
        decode_csv(b"Date,Close\n\xff\n", "prices.csv")
    with pytest.raises(DataValidationError, match=r"^prices\.csv is not UTF-8 text: "):
        load_prices(b"Date,Close\n\xff\n", "prices.csv")


def test_load_prices_names_the_file_when_it_is_empty():
    with pytest.raises(DataValidationError, match=r"^prices\.csv is empty: "):
        load_prices(b"", "prices.csv")


def test_load_prices_keeps_the_table_as_read_and_the_most_recent_rows():
    loaded = load_prices(THREE_DAYS, "prices.csv", max_row_limit=2)
    # The table as read: strings, all three rows.
    assert loaded.table.to_dict("list") == {
        "Date": ["2024-01-02", "2024-01-03", "2024-01-04"],
        "Close": ["10.0", "10.5", "11.0"],
    }
    # The limit keeps the two most recent rows: 3 - 2 = 1 dropped.
    assert loaded.prices["Close"].tolist() == [10.5, 11.0]
    assert (loaded.report.rows_out, loaded.report.limit_dropped) == (2, 1)


def test_a_cleaning_report_as_a_dict_holds_every_field():
    report = load_prices(THREE_DAYS, "prices.csv").report.as_dict()
    # 10 -> 10.5 is +5%, 10.5 -> 11 is +4.8%: the largest move 0.05; one day between each two dates.
    assert report.pop("largest_daily_move") == pytest.approx(0.05)
    assert report == {
        "rows_in": 3,
        "price_column": "Close",
        "newest_first": False,
        "missing_dropped": 0,
        "duplicates_dropped": 0,
        "limit_dropped": 0,
        "rows_out": 3,
        "date_format": "ISO8601",
        "adjusted": False,
        "largest_gap_days": 1,
        "suspect_moves": (),
        "calendar": "XNYS",
        "session_holes": (),
        "non_session_dates": (),
    }


def test_without_a_calendar_there_are_no_holes_nor_non_sessions():
    report = load_prices(THREE_DAYS, "prices.csv", checks=PriceChecks(calendar="none")).report
    assert (report.session_holes, report.non_session_dates) == ((), ())


def test_a_hole_over_the_limit_names_its_sessions_and_the_calendar():
    # 3 and 4 January 2024 are XNYS sessions without a price: a hole of 2, over max_gap_sessions=1.
    with pytest.raises(DataValidationError) as raised:
        load_prices(
            b"Date,Close\n2024-01-02,10\n2024-01-05,10\n", "f", checks=PriceChecks(max_gap_sessions=1)
        )
    assert str(raised.value) == (
        "no prices for 2 sessions of XNYS between 2024-01-02 and 2024-01-05 (more than max_gap_sessions=1): "
        "windows would straddle it as if it were one day; use a complete series, or check that calendar=XNYS "
        "is the exchange of these prices"
    )


def test_equal_suspect_moves_are_listed_in_date_order():
    # 100 -> 150 -> 225 -> 450 -> 900: +50% on 2 and 3 January, +100% on 4 and 5 January (exact in floats).
    # Largest first, equal ones oldest first: 4, 5, 2, 3 January.
    prices = pd.DataFrame(
        {"Date": pd.date_range("2024-01-01", periods=5), "Close": [100.0, 150.0, 225.0, 450.0, 900.0]}
    )
    largest, moves = daily_moves(prices, 0.3)
    assert largest == 1.0
    assert [move.date for move in moves] == ["2024-01-04", "2024-01-05", "2024-01-02", "2024-01-03"]
    assert (moves[0].before, moves[0].after) == (225.0, 450.0)


def test_json_after_blank_lines_is_refused_as_json():
    with pytest.raises(DataValidationError, match=r"^api is JSON, not CSV: \{\"error\": \"limit\"\}$"):
        read_price_table('\n  \n{"error": "limit"}\n', "api")


def test_a_long_json_line_is_cut_to_160_characters():
    line = "[" + "1" * 160  # 161 characters: cut to its first 157 and "..." (160 in all)
    with pytest.raises(DataValidationError) as raised:
        read_price_table(line, "api")
    assert str(raised.value) == "api is JSON, not CSV: [" + "1" * 156 + "..."


def test_a_header_starting_with_x_is_csv_not_json():
    assert read_price_table("Xday,Close\n1,2\n", "f").to_dict("list") == {"Xday": ["1"], "Close": ["2"]}


def test_a_one_column_file_is_read_as_one_column():
    # No separator in the header: a comma file of one column, not a column split where a sniffer guesses.
    assert read_price_table("Close\n1.5\n2.5\n", "f").to_dict("list") == {"Close": ["1.5", "2.5"]}


def test_spaces_after_the_separator_are_skipped_in_values():
    frame = read_price_table("Date, Close\n2024-01-02, 1.5\n", "f")
    assert frame.to_dict("list") == {"Date": ["2024-01-02"], "Close": ["1.5"]}


def test_a_comma_files_quoted_thousands_are_not_read_as_decimal_commas():
    # "1,500" in a comma file is one thousand five hundred: left as written, not turned into "1.500" (1.5).
    frame = read_price_table('Date,Close\n2024-01-02,"1,500"\n', "f")
    assert frame["Close"].tolist() == ["1,500"]


def test_a_row_with_too_many_fields_is_refused_by_the_files_name():
    with pytest.raises(DataValidationError, match=r"^f is not a readable CSV file: "):
        read_price_table("Date,Close\n2024-01-02,1\n2024-01-03,1,2,3\n", "f")


def test_a_header_without_rows_names_its_columns():
    with pytest.raises(DataValidationError) as raised:
        read_price_table("Date,Close\n", "f")
    assert str(raised.value) == "f has a header (Date, Close) but no data rows"


def test_a_pipe_separated_file_is_refused_naming_the_separators_read():
    with pytest.raises(DataValidationError) as raised:
        read_price_table("Date|Close\n2024-01-02|1\n", "f")
    assert str(raised.value) == (
        "f separates its fields with '|': only comma-, semicolon- or tab-separated files are read"
    )


def test_summarize_raw_reads_dates_with_the_format_given():
    # Day first: 03/01/2020 is 3 January, 13/01/2020 the 13th, 02/01/2020 the 2nd (neither ISO 8601 nor month
    # first, which the first value alone would suggest). First and last in date order: 2 and 13 January.
    raw = pd.DataFrame({"Date": ["03/01/2020", "13/01/2020", "02/01/2020"], "Close": ["1", "2", "3"]})
    summary = summarize_raw(raw, "%d/%m/%Y")
    assert (summary.rows, summary.first_date, summary.last_date) == (3, "2020-01-02", "2020-01-13")


def test_summarize_raw_names_the_date_column_of_a_bad_or_empty_date():
    with pytest.raises(DataValidationError, match=r"^column 'Date' has a date that does not parse"):
        summarize_raw(pd.DataFrame({"Date": ["2020-01-02", "soon"]}))
    with pytest.raises(DataValidationError) as raised:
        summarize_raw(pd.DataFrame({"Date": [None, None]}, dtype=object))
    assert str(raised.value) == "column 'Date' holds no dates"


def prepared(dates: list, closes: list) -> pd.DataFrame:
    return pd.DataFrame({"Date": dates, "Close": closes})


def test_validate_prepared_names_every_missing_column_and_those_found():
    with pytest.raises(DataValidationError) as raised:
        validate_prepared(pd.DataFrame({"When": ["2024-01-02"], "Price": ["1"]}), "prepared.csv")
    assert str(raised.value) == "prepared.csv lacks column(s) Date, Close; found: When, Price"


def test_validate_prepared_names_the_column_of_a_bad_date_or_price():
    with pytest.raises(DataValidationError, match=r"^column 'Date' has a date that does not parse"):
        validate_prepared(prepared(["2024-01-02", "2024-02-30"], ["1", "2"]), "p")
    with pytest.raises(DataValidationError, match=r"^column 'Close' has a value that is not a number"):
        validate_prepared(prepared(["2024-01-02", "2024-01-03"], ["1", "two"]), "p")


def test_validate_prepared_reads_iso_dates_only():
    # 01/02/2024 is a date in some export format, not ISO 8601: the contract is the transform's ISO dates.
    with pytest.raises(DataValidationError, match=r"^column 'Date' has a date that does not parse"):
        validate_prepared(prepared(["01/02/2024", "01/03/2024"], ["1", "2"]), "p")


@pytest.mark.parametrize(
    "dates, closes",
    [
        (["2024-01-02", "2024-01-03"], ["1", None]),  # a price missing, the dates complete
        (["2024-01-02", None], ["1", "2"]),  # a date missing, the prices complete
    ],
)
def test_validate_prepared_refuses_an_empty_cell(dates, closes):
    with pytest.raises(DataValidationError) as raised:
        validate_prepared(prepared(dates, closes), "p")
    assert str(raised.value) == "p has empty cells: run transform_data on it first"


def test_validate_prepared_refuses_a_date_twice_even_in_order():
    # 2, 2, 3 January: ascending (not decreasing anywhere) but not strictly.
    with pytest.raises(DataValidationError) as raised:
        validate_prepared(prepared(["2024-01-02", "2024-01-02", "2024-01-03"], ["1", "1", "2"]), "p")
    assert str(raised.value) == "p is not in strictly ascending date order: run transform_data on it first"


def test_a_gap_over_max_gap_days_without_a_calendar_says_how_to_allow_it():
    # 2 to 15 January 2024: 13 days, over the default max_gap_days=10.
    with pytest.raises(DataValidationError) as raised:
        load_prices(b"Date,Close\n2024-01-02,10\n2024-01-15,10\n", "f", checks=PriceChecks(calendar="none"))
    assert str(raised.value) == (
        "no prices between 2024-01-02 and 2024-01-15 (13 days, more than max_gap_days=10): windows would "
        "straddle it as if it were one day; use a complete series, or raise max_gap_days if the market "
        "was closed"
    )


def test_a_date_with_several_prices_lists_them_in_the_files_order():
    # 17 rows on 3 or 2 January, priced 10 + their row (0 to 16): sorting by date must keep equal dates in
    # the file's order (an unstable sort reorders 17 such rows). 2 January is on rows 1, 2, 3, 4, 7, 9, 11,
    # 12, 15 and 16: prices 11, 12, 13, 14, 17, 19, 21, 22, 25, 26.
    days = [3, 2, 2, 2, 2, 3, 3, 2, 3, 2, 3, 2, 2, 3, 3, 2, 2]
    rows = "".join(f"2024-01-0{day},{10 + row}\n" for row, day in enumerate(days))
    with pytest.raises(DataValidationError) as raised:
        load_prices(("Date,Close\n" + rows).encode(), "f")
    assert str(raised.value) == (
        "date 2024-01-02 appears more than once with different 'Close' values: "
        "11, 12, 13, 14, 17, 19, 21, 22, 25, 26"
    )
