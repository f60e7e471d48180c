"""Trading calendars: forecast dates on the exchange's sessions, price checks in missing sessions."""

import exchange_calendars
import pandas as pd
import pytest

from flow_steps.config.calendars import NO_CALENDAR
from flow_steps.config.declarations import CALENDAR
from flow_steps.config.errors import DataValidationError, PipelineError
from flow_steps.config.values import PriceChecks
from flow_steps.data.ingest import load_prices
from flow_steps.data.sessions import Hole, next_sessions
from flow_steps.deployment.prediction import forecast_table

FRIDAY_BEFORE_CHRISTMAS = pd.Timestamp("2016-12-23")


def days(*isos: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(day) for day in isos]


def csv_of(dates) -> bytes:
    return (
        "Date,Close\n" + "".join(f"{day:%Y-%m-%d},{50 + i % 7}.25\n" for i, day in enumerate(dates))
    ).encode()


def nyse_sessions(first: str, last: str) -> pd.DatetimeIndex:
    """exchange-calendars' own answer: the NYSE's sessions from `first` to `last`."""
    return exchange_calendars.get_calendar("XNYS", start=first, end=last).sessions


def test_a_forecast_from_friday_2016_12_23_is_dated_with_the_next_five_nyse_sessions():
    """The NYSE was closed on Monday 12-26 (Christmas observed) and Monday 2017-01-02 (New Year)."""
    prices = pd.DataFrame({"Date": [FRIDAY_BEFORE_CHRISTMAS], "Close": [63.24]})
    answer = pd.DataFrame({"days_ahead": range(1, 6), "forecast_close": [63.0, 63.1, 63.2, 63.3, 63.4]})
    table = forecast_table(prices, answer, "XNYS")
    assert list(table["Date"]) == days("2016-12-27", "2016-12-28", "2016-12-29", "2016-12-30", "2017-01-03")
    weekdays = forecast_table(prices, answer, NO_CALENDAR)  # no calendar: Monday to Friday, as before
    assert list(weekdays["Date"]) == list(pd.bdate_range("2016-12-26", periods=5))


def test_a_horizon_past_the_calendar_librarys_default_end_gets_its_sessions():
    default_end = exchange_calendars.get_calendar("XNYS").last_session  # a year from today
    last_price = default_end - pd.Timedelta(days=10)
    dates = next_sessions("XNYS", last_price, 60)
    assert len(dates) == 60 and dates[0] > last_price and dates[-1] > default_end + pd.Timedelta(days=60)
    span = nyse_sessions(f"{last_price:%Y-%m-%d}", f"{dates[-1]:%Y-%m-%d}")
    assert list(dates) == list(span[span > last_price])  # every session in turn, holidays skipped


def test_london_uses_its_own_holidays():
    """Boxing Day (Tuesday 2017-12-26) and the 2016 Christmas and Boxing Day closures are London's."""
    assert list(next_sessions("XLON", FRIDAY_BEFORE_CHRISTMAS, 4)) == days(
        "2016-12-28", "2016-12-29", "2016-12-30", "2017-01-03"
    )
    new_york_file = csv_of(nyse_sessions("2017-12-18", "2018-01-05"))
    in_london = load_prices(new_york_file, "prices.csv", checks=PriceChecks(calendar="XLON")).report
    assert in_london.non_session_dates == ("2017-12-26",)
    in_new_york = load_prices(new_york_file, "prices.csv", checks=PriceChecks(calendar="XNYS")).report
    assert in_new_york.non_session_dates == () and in_new_york.session_holes == ()


def test_a_missing_week_of_sessions_is_named_not_refused():
    year = nyse_sessions("2016-01-04", "2016-12-30")
    week = (year >= "2016-03-07") & (year <= "2016-03-11")
    loaded = load_prices(csv_of(year[~week]), "prices.csv")  # XNYS, the default
    assert loaded.report.session_holes == (Hole("2016-03-04", "2016-03-14", 5),)
    assert loaded.report.largest_gap_sessions == 5 and loaded.report.non_session_dates == ()
    assert len(loaded.prices) == len(year) - 5
    complete = load_prices(csv_of(year), "prices.csv").report  # holidays and weekends are no hole
    assert complete.session_holes == () and complete.largest_gap_days == 4  # Good Friday's long weekend


def test_a_two_year_hole_is_refused_naming_both_dates():
    dates = nyse_sessions("2004-01-02", "2008-12-31")
    dates = dates[(dates <= "2004-12-31") | (dates >= "2007-01-03")]
    missing = len(nyse_sessions("2005-01-01", "2007-01-02"))  # 2005 and 2006: about 500
    with pytest.raises(DataValidationError) as refused:
        load_prices(csv_of(dates), "prices.csv")
    assert str(refused.value).startswith(
        f"no prices for {missing} sessions of XNYS between 2004-12-31 and 2007-01-03 (more than "
        "max_gap_sessions=10)"
    )
    allowed = load_prices(csv_of(dates), "prices.csv", checks=PriceChecks(max_gap_sessions=600)).report
    assert allowed.largest_gap_sessions == missing


def test_prices_dated_on_a_saturday_are_named_and_kept():
    dates = [*nyse_sessions("2016-12-12", "2016-12-23"), pd.Timestamp("2016-12-24")]  # a Saturday
    loaded = load_prices(csv_of(dates), "prices.csv")
    assert loaded.report.non_session_dates == ("2016-12-24",)
    assert loaded.prices["Date"].iloc[-1] == pd.Timestamp("2016-12-24")  # never dropped in silence


def test_without_a_calendar_gaps_are_calendar_days_as_before():
    dates = nyse_sessions("2016-01-04", "2016-03-31")
    report = load_prices(csv_of(dates), "prices.csv", checks=PriceChecks(calendar=NO_CALENDAR)).report
    assert report.session_holes == () and report.largest_gap_days == 4
    gap = dates[(dates <= "2016-02-01") | (dates >= "2016-02-16")]
    with pytest.raises(DataValidationError, match=r"\(15 days, more than max_gap_days=10\)"):
        load_prices(csv_of(gap), "prices.csv", checks=PriceChecks(calendar=NO_CALENDAR))


def test_a_bad_calendar_code_is_refused_in_one_line_saying_how_to_list_the_codes():
    with pytest.raises(PipelineError) as refused:
        CALENDAR.check("NYSEE")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("calendar='NYSEE' is not an exchange calendar")
    assert "exchange_calendars" in message and "get_calendar_names" in message
    for code in ("XNYS", "XLON", "XTKS", NO_CALENDAR):
        CALENDAR.check(code)
