"""Reading a price file's dates and columns (data/reading.py): what the complete mutation run of 2026-12-06
found no fast test reaching. Each message and date is written out by hand from the definitions: the
columns a missing date or price column is looked for under, the format and data row a refusal names,
the pair of spellings of one day a column is refused for, and the day a date with a UTC offset falls on."""

import pandas as pd
import pytest

from flow_steps.config.errors import DataValidationError
from flow_steps.data.reading import (
    date_column,
    parse_dates,
    price_column,
    read_price_table,
    resolve_date_format,
)


def refusal(call, *args) -> str:
    with pytest.raises(DataValidationError) as raised:
        call(*args)
    return str(raised.value)


def test_no_date_column_names_the_names_looked_for_and_the_columns_found():
    assert refusal(date_column, pd.DataFrame(columns=["When", "Close"])) == (
        "no date column (expected one of Date, Timestamp, Day); found columns: When, Close"
    )


def test_no_price_column_names_the_adjusted_and_plain_closes_looked_for():
    # The adjusted closes first (the preferred ones), then the plain close.
    assert refusal(price_column, pd.DataFrame(columns=["Date", "Open"])) == (
        "no price column (expected one of Adj Close, Adj. Close, Adj_Close, Adjusted Close, AdjClose, "
        "Close); found columns: Date, Open"
    )


def test_a_given_date_format_that_cannot_read_a_date_is_named_with_the_column():
    # ISO 8601's 2000-03-01 is not day/month/year: refused although the format a reader would guess (ISO
    # 8601) reads it. The format given is used as it is, never guessed.
    assert refusal(resolve_date_format, pd.Series(["2000-03-01"]), "When", "%d/%m/%Y") == (
        "column 'When' has a date that does not parse with date_format '%d/%m/%Y': '2000-03-01' (data row 1)"
    )
    assert resolve_date_format(pd.Series(["01/03/2000"]), "When", "%d/%m/%Y") == "%d/%m/%Y"


def test_a_date_in_another_format_is_named_with_the_format_of_the_other_dates_and_its_data_row():
    # %d/%m/%Y reads 01/03/2000 and 13/03/2000 (2 dates); %m/%d/%Y only 01/03/2000 (13 is no month) and ISO
    # 8601 only 2000-03-20: the column's format is %d/%m/%Y, and 2000-03-20 is the date it does not read.
    # Data rows count the missing cell on row 2: 2000-03-20 is on row 4.
    values = pd.Series(["01/03/2000", None, "13/03/2000", "2000-03-20"])
    assert refusal(resolve_date_format, values, "Date") == (
        "column 'Date' has a date that does not parse with %d/%m/%Y, the format of its other dates: "
        "'2000-03-20' (data row 4)"
    )


@pytest.mark.parametrize(
    "values",
    [
        # Three spellings of 1 February as %d/%m/%Y: the first two are named.
        ["1/2/2000", "01/02/2000", "01/2/2000", "13/02/2000"],
        # 1 March, 13 February, 14 February, 1 February twice as %d/%m/%Y: only 1 February is written twice
        # (13/02 and 14/02, which no month-first reading reads, are two different days).
        ["01/03/2000", "13/02/2000", "14/02/2000", "1/2/2000", "01/02/2000"],
    ],
)
def test_one_day_written_two_ways_names_the_first_two_spellings_of_that_day(values):
    # Every value reads as %d/%m/%Y (13 and 14 are no months: %m/%d/%Y does not), but not into distinct
    # dates; the day written twice is 1 February 2000.
    assert refusal(resolve_date_format, pd.Series(values), "Date") == (
        "column 'Date' writes one date two ways: '1/2/2000' and '01/02/2000' are both 2000-02-01 as "
        "%d/%m/%Y; each day must appear once"
    )


def test_parse_dates_names_the_format_the_value_and_its_data_row():
    # 'soon' is on data row 3 (the missing cell on row 2 counts).
    assert refusal(parse_dates, pd.Series(["2020-01-02", None, "soon"]), "Date") == (
        "column 'Date' has a date that does not parse with format ISO8601: 'soon' (data row 3)"
    )


def test_a_date_with_a_utc_offset_falls_on_its_day_in_utc_without_a_time_zone():
    # 23:00 at UTC-5 on 2 January is 04:00 UTC on 3 January: the day is 3 January, midnight, no time zone.
    parsed = parse_dates(pd.Series(["2020-01-02T23:00:00-05:00"]), "Date")
    assert parsed.dt.tz is None
    assert parsed.tolist() == [pd.Timestamp("2020-01-03")]


def test_in_a_semicolon_file_only_columns_of_decimal_comma_numbers_are_rewritten():
    # Close's "1,5" is one and a half: read as "1.5". Note's "a,b" holds a comma but is no number: as written.
    table = read_price_table("Date;Close;Note\n2020-01-02;1,5;a,b\n", "p.csv")
    assert table.to_dict("list") == {"Date": ["2020-01-02"], "Close": ["1.5"], "Note": ["a,b"]}


def test_a_given_date_format_names_the_unreadable_dates_data_row_counting_missing_and_repeated_cells():
    """Rows: 1 '01/03/2000', 2 missing, 3 '01/03/2000' again, 4 '13/03/2000' (month 13 under %m/%d/%Y).
    The refusal names data row 4, the file's row, not the 2nd distinct value (a bug found by mutation:
    the rows were counted over the distinct values)."""
    values = pd.Series(["01/03/2000", None, "01/03/2000", "13/03/2000"])
    with pytest.raises(DataValidationError, match=r"'13/03/2000' \(data row 4\)"):
        resolve_date_format(values, "Date", "%m/%d/%Y")
