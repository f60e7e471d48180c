"""Prices that parse but lie: dates read with one format, separators, gaps and suspect moves."""

import pandas as pd
import pytest

from flow_steps.config.errors import DataValidationError
from flow_steps.config.values import PriceChecks
from flow_steps.data.ingest import load_prices
from flow_steps.data.reading import read_price_table

TRUE_DATES = ["2000-03-01", "2000-03-02", "2000-03-03", "2000-03-06", "2000-03-13", "2000-03-14"]


def csv(
    dates: list[str], closes: list[str] | None = None, header: str = "Date,Close", sep: str = ","
) -> bytes:
    closes = closes or [f"{10 + i}.5" for i in range(len(dates))]
    return (
        header + "\n" + "\n".join(f"{d}{sep}{c}" for d, c in zip(dates, closes, strict=True)) + "\n"
    ).encode()


def written(fmt: str, dates: list[str] = TRUE_DATES) -> list[str]:
    return [pd.Timestamp(day).strftime(fmt) for day in dates]


def iso(prices: pd.DataFrame) -> list[str]:
    return prices["Date"].dt.strftime("%Y-%m-%d").tolist()


@pytest.mark.parametrize(
    ("fmt", "read_as"),
    [
        ("%d/%m/%Y", "%d/%m/%Y"),
        ("%m/%d/%Y", "%m/%d/%Y"),
        ("%d.%m.%Y", "%d.%m.%Y"),
        ("%d-%m-%Y", "%d-%m-%Y"),
        ("%Y%m%d", "ISO8601"),  # 20000301 is ISO 8601's basic format
        ("%d-%b-%Y", "%d-%b-%Y"),
        ("%Y/%m/%d", "ISO8601"),  # pandas' ISO 8601 reader takes year-first dates with slashes
    ],
)
def test_a_format_that_alone_reads_every_date_is_used_for_the_whole_column(fmt, read_as):
    loaded = load_prices(csv(written(fmt)), "prices.csv")
    assert iso(loaded.prices) == TRUE_DATES
    assert loaded.report.date_format == read_as


def test_a_european_export_is_read_day_first_because_one_date_reads_no_other_way():
    march = [f"2000-03-{day:02d}" for day in (1, 2, 3, 6, 13, 20, 27, 31)]  # 31/03/2000: no month 31
    loaded = load_prices(csv(written("%d/%m/%Y", march)), "prices.csv")
    assert loaded.report.date_format == "%d/%m/%Y" and iso(loaded.prices) == march


def test_one_date_written_two_ways_is_refused_not_read_as_two_rows():
    """A format is used only if it reads every row into distinct dates: here '1/2/2000' and '01/02/2000'
    are one day, so the column is refused in one line instead of being read with a duplicate."""
    with pytest.raises(DataValidationError) as refused:
        load_prices(csv(["1/2/2000", "01/02/2000", "13/02/2000"]), "prices.csv")
    assert str(refused.value) == (
        "column 'Date' writes one date two ways: '1/2/2000' and '01/02/2000' are both 2000-02-01 as "
        "%d/%m/%Y; each day must appear once"
    )


def test_iso_dates_come_first():
    loaded = load_prices(csv(TRUE_DATES), "prices.csv")
    assert loaded.report.date_format == "ISO8601" and iso(loaded.prices) == TRUE_DATES


def test_dates_that_read_two_ways_are_refused_naming_date_format():
    ambiguous = ["2000-03-01", "2000-03-02", "2000-03-03", "2000-03-06"]  # every day 12 or less
    with pytest.raises(DataValidationError) as refused:
        load_prices(csv(written("%d/%m/%Y", ambiguous)), "prices.csv")
    message = str(refused.value)
    assert "column 'Date' has dates that read two ways: '01/03/2000' is" in message
    assert "set date_format" in message
    loaded = load_prices(
        csv(written("%d/%m/%Y", ambiguous)), "prices.csv", checks=PriceChecks(date_format="%d/%m/%Y")
    )
    assert iso(loaded.prices) == ambiguous


def test_formats_are_never_mixed_within_a_file():
    mixed = ["01/03/2000", "03/02/2000", "2000-03-03", "13/03/2000"]
    with pytest.raises(DataValidationError, match="column 'Date' has a date that does not parse"):
        load_prices(csv(mixed), "prices.csv")


def test_a_given_date_format_must_read_every_row():
    with pytest.raises(
        DataValidationError, match=r"does not parse with date_format '%m/%d/%Y': '13/03/2000'"
    ):
        load_prices(csv(written("%d/%m/%Y")), "prices.csv", checks=PriceChecks(date_format="%m/%d/%Y"))


def test_semicolon_files_with_decimal_commas_are_read():
    text = "Date;Open;Close\n2000-03-01;1.234,50;1.240,25\n2000-03-02;1.240,00;1.199,75\n"
    prices = load_prices(text.encode(), "prices.csv").prices
    assert prices["Close"].tolist() == [1240.25, 1199.75]


def test_tab_separated_files_are_read():
    prices = load_prices(csv(TRUE_DATES, header="Date\tClose", sep="\t"), "prices.tsv").prices
    assert iso(prices) == TRUE_DATES


def test_another_separator_is_refused_by_name():
    with pytest.raises(DataValidationError, match=r"prices.csv separates its fields with '\|'"):
        read_price_table("Date|Close\n2000-03-01|1.5\n", "prices.csv")


def test_without_a_calendar_a_gap_longer_than_max_gap_days_is_refused_naming_both_dates():
    dates, weekdays = ["2000-03-01", "2000-03-02", "2002-03-04", "2002-03-05"], PriceChecks(calendar="none")
    with pytest.raises(DataValidationError, match=r"no prices between 2000-03-02 and 2002-03-04 \(732 days"):
        load_prices(csv(dates), "prices.csv", checks=weekdays)
    loaded = load_prices(csv(TRUE_DATES), "prices.csv", checks=weekdays)
    assert loaded.report.largest_gap_days == 7  # 2000-03-06 -> 2000-03-13


def test_a_large_move_without_an_adjusted_close_is_named():
    closes = ["48.30", "48.50", "24.96", "25.10", "25.00", "25.20"]
    loaded = load_prices(csv(TRUE_DATES, closes), "prices.csv")
    [move] = loaded.report.suspect_moves
    assert (move.date, move.before, move.after) == ("2000-03-03", 48.5, 24.96)
    assert loaded.report.largest_daily_move == pytest.approx(1 - 24.96 / 48.5)
    with pytest.raises(
        DataValidationError, match=r"'Close' moved -48.5% in one day on 2000-03-03 \(48.5 -> 24.96"
    ):
        load_prices(csv(TRUE_DATES, closes), "prices.csv", checks=PriceChecks(on_suspect_move="fail"))
    calmer = load_prices(csv(TRUE_DATES, closes), "prices.csv", checks=PriceChecks(max_daily_move=0.6))
    assert calmer.report.suspect_moves == ()


def test_an_adjusted_close_is_not_suspect():
    text = "Date,Close,Adj Close\n" + "\n".join(
        f"{day},{close},{close}"
        for day, close in zip(TRUE_DATES, ["10", "10", "5", "5", "5", "5"], strict=True)
    )
    loaded = load_prices(text.encode(), "prices.csv", checks=PriceChecks(on_suspect_move="fail"))
    assert loaded.report.suspect_moves == () and loaded.report.largest_daily_move == pytest.approx(0.5)
