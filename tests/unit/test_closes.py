"""Only closes that have happened: `as_of` read as an instant, and the bars dropped for not being closes.

Expected instants are worked from the exchange's published hours, not from the code: NYSE closes at
16:00 New York time, 21:00 UTC in winter (EST) and 20:00 UTC in summer (EDT), 13:00 (18:00 UTC) on the
day after Thanksgiving; 2026-07-03 is the holiday observed for Saturday 4 July.
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from flow_steps.config.as_of import check_as_of, resolve_as_of
from flow_steps.config.errors import DataValidationError, PipelineError
from flow_steps.data.closes import closed, closing_times, cut_unclosed

CLOCK = pd.Timestamp("2026-12-06 10:13:00", tz="UTC")


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("now", CLOCK),
        ("NOW ", CLOCK),
        ("2026-12-04", utc("2026-12-04 23:59:59.999999")),
        ("2026-12-04T21:30:00Z", utc("2026-12-04 21:30")),
        ("2026-12-04T21:30:00", utc("2026-12-04 21:30")),
        ("2026-12-04T16:30:00-05:00", utc("2026-12-04 21:30")),
    ],
)
def test_as_of_is_an_instant_in_utc(value: str, expected: pd.Timestamp) -> None:
    assert resolve_as_of(value, CLOCK) == expected


def test_a_naive_clock_is_read_as_utc() -> None:
    assert resolve_as_of("now", pd.Timestamp("2026-12-06 10:13")) == CLOCK


@pytest.mark.parametrize("value", ["yesterday", "", "2026-13-01", "12/04"])
def test_an_as_of_that_is_no_instant_is_refused_by_name(value: str) -> None:
    with pytest.raises(PipelineError, match=f"as_of='{value}' is neither 'now', a date"):
        check_as_of(value)


@pytest.mark.parametrize(
    ("day", "close"),
    [
        ("2026-12-04", "2026-12-04 21:00"),  # winter
        ("2026-07-02", "2026-07-02 20:00"),  # summer
        ("2026-11-27", "2026-11-27 18:00"),  # early close
        ("2026-07-03", "2026-07-04 00:00"),  # a holiday: not a session, the end of the day
        ("2026-12-05", "2026-12-06 00:00"),  # a Saturday
    ],
)
def test_a_bar_becomes_a_close_at_its_session_close(day: str, close: str) -> None:
    assert closing_times(pd.DatetimeIndex([day]), "XNYS")[0] == utc(close)


def test_with_no_calendar_a_bar_closes_at_the_end_of_its_day() -> None:
    assert closing_times(pd.DatetimeIndex(["2026-12-04"]), "none")[0] == utc("2026-12-05 00:00")


def test_tokyo_closes_in_the_morning_utc() -> None:
    # XTKS: 15:30 Tokyo (UTC+9, no daylight saving) = 06:30 UTC since its 2024 extension
    assert closing_times(pd.DatetimeIndex(["2026-12-04"]), "XTKS")[0] == utc("2026-12-04 06:30")


@pytest.mark.parametrize(
    ("now", "kept"),
    [
        ("2026-12-04 20:59:59.999999", False),  # just before the close
        ("2026-12-04 21:00", True),  # exactly at it
        ("2026-12-04 21:00:00.000001", True),
    ],
)
def test_a_bar_is_kept_from_its_close_on(now: str, kept: bool) -> None:
    assert closed(pd.DatetimeIndex(["2026-12-04"]), "XNYS", utc(now)).tolist() == [kept]


def test_every_bar_after_now_is_dropped_and_long_past_ones_kept() -> None:
    days = pd.DatetimeIndex(["1990-01-02", "2026-12-03", "2026-12-04", "2026-12-07", "2027-01-04"])
    assert closed(days, "XNYS", utc("2026-12-04 21:00")).tolist() == [True, True, True, False, False]


PRICES = "Date,Close,Adj Close\r\n2026-12-02,10.5,10.0\r\n2026-12-03,11.5,11.0\r\n2026-12-04,12.5,12.0\r\n"


def test_the_unclosed_bar_is_dropped_and_every_other_byte_kept(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="flow_steps.data.closes"):
        cut = cut_unclosed(PRICES.encode(), "f.csv", "auto", "XNYS", utc("2026-12-04 18:00"))
    assert cut.content == b"Date,Close,Adj Close\r\n2026-12-02,10.5,10.0\r\n2026-12-03,11.5,11.0\r\n"
    assert cut.dropped == ("2026-12-04",)
    assert [record.getMessage() for record in caplog.records] == [
        "Dropped 1 bar not closed at 2026-12-04 18:00 UTC (sessions of XNYS): 2026-12-04"
    ]


def test_nothing_to_drop_gives_the_same_bytes() -> None:
    content = ("\ufeff" + PRICES).encode()
    cut = cut_unclosed(content, "f.csv", "auto", "XNYS", utc("2026-12-04 21:00"))
    assert cut.content is content and cut.dropped == ()


def test_newest_first_files_and_a_byte_order_mark_keep_their_shape() -> None:
    text = "\ufeffDate;Close\n04.12.2026;12,5\n03.12.2026;11,5\n"
    cut = cut_unclosed(text.encode(), "f.csv", "%d.%m.%Y", "XNYS", utc("2026-12-04 12:00"))
    assert cut.content.decode() == "\ufeffDate;Close\n03.12.2026;11,5\n"


def test_as_of_a_past_day_cuts_many_bars_and_names_a_few() -> None:
    rows = "".join(f"2026-11-{day:02d},1\n" for day in (23, 24, 25, 27, 30))
    cut = cut_unclosed(f"Date,Close\n{rows}".encode(), "f.csv", "auto", "XNYS", utc("2026-11-23 23:59"))
    assert cut.dropped == ("2026-11-24", "2026-11-25", "2026-11-27", "2026-11-30")
    assert cut.content == b"Date,Close\n2026-11-23,1\n"


def test_a_file_with_no_close_by_now_is_one_line() -> None:
    with pytest.raises(
        DataValidationError,
        match=r"^f.csv has no close by 2026-12-01 00:00 UTC \(as_of\): its first bar is of 2026-12-02$",
    ):
        cut_unclosed(PRICES.encode(), "f.csv", "auto", "XNYS", utc("2026-12-01"))


# What the complete mutation run of 2026-12-06 left alive in `cut_unclosed`, the first code to read a
# downloaded file's bytes: its refusals name the file and the column, a given date_format is used, and its
# INFO line (docs/data.md: "one INFO line naming the dropped dates") names them right.
NOW = utc("2026-12-04 18:00")  # a Friday, before NYSE's 21:00 UTC close


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"Date,Close\n\xff\n", r"^f\.csv is not UTF-8 text: "),
        (b"", r"^f\.csv is empty: expected a CSV file with a header row$"),
        (b"Date,Close\n01/03/2000,1\n02/03/2000,2\n", r"^column 'Date' has dates that read two ways"),
    ],
)
def test_a_file_that_cannot_be_cut_is_refused_naming_the_file_or_its_date_column(content, message) -> None:
    with pytest.raises(DataValidationError, match=message):
        cut_unclosed(content, "f.csv", "auto", "XNYS", NOW)


def test_a_given_date_format_settles_dates_that_read_two_ways_before_the_cut() -> None:
    """03/12/2026 and 04/12/2026 read as March or December: day-first they are Thu 3 and Fri 4 December;
    at 12:00 UTC on the 4th its close (21:00 UTC) has not happened, so that bar goes, the 3rd stays."""
    content = b"Date,Close\n03/12/2026,1\n04/12/2026,2\n"
    cut = cut_unclosed(content, "f.csv", "%d/%m/%Y", "XNYS", utc("2026-12-04 12:00"))
    assert cut.dropped == ("2026-12-04",)
    assert cut.content == b"Date,Close\n03/12/2026,1\n"
    assert cut.now == utc("2026-12-04 12:00")


def test_a_file_whose_dates_are_all_missing_is_passed_on_uncut() -> None:
    """No date to cut by: the file goes on as it is (load_prices refuses it in its own words)."""
    content = b"Date,Close\n,1\n"
    cut = cut_unclosed(content, "f.csv", "auto", "XNYS", NOW)
    assert (cut.content, cut.dropped) == (content, ())


def test_the_cut_names_the_first_three_dropped_bars_and_how_many_more(caplog) -> None:
    """Four NYSE sessions after Mon 2026-11-23 (24, 25, 27 and 30; 26 is Thanksgiving) are not closed at
    23:59 UTC on the 23rd: three are named, "and 1 more"."""
    rows = "".join(f"2026-11-{day:02d},1\n" for day in (23, 24, 25, 27, 30))
    with caplog.at_level(logging.INFO, logger="flow_steps.data.closes"):
        cut_unclosed(f"Date,Close\n{rows}".encode(), "f.csv", "auto", "XNYS", utc("2026-11-23 23:59"))
    assert [record.getMessage() for record in caplog.records] == [
        "Dropped 4 bars not closed at 2026-11-23 23:59 UTC (sessions of XNYS): 2026-11-24, 2026-11-25, "
        "2026-11-27 and 1 more"
    ]


def test_without_a_calendar_the_cut_names_days_and_exactly_three_dropped_bars_in_full(caplog) -> None:
    """calendar=none: a day's bar is closed at the day's end, midnight UTC. At 2026-12-02 00:00 the 1st is
    closed, the 2nd, 3rd and 4th are not: three bars, all named, no "and 0 more"."""
    content = b"Date,Close\n2026-12-01,1\n2026-12-02,2\n2026-12-03,3\n2026-12-04,4\n"
    with caplog.at_level(logging.INFO, logger="flow_steps.data.closes"):
        cut = cut_unclosed(content, "f.csv", "auto", "none", utc("2026-12-02 00:00"))
    assert cut.dropped == ("2026-12-02", "2026-12-03", "2026-12-04")
    assert [record.getMessage() for record in caplog.records] == [
        "Dropped 3 bars not closed at 2026-12-02 00:00 UTC (days): 2026-12-02, 2026-12-03, 2026-12-04"
    ]


def test_one_dropped_bar_is_named_in_the_singular(caplog) -> None:
    """Fri 2026-12-04 is not closed at 18:00 UTC (NYSE closes at 21:00 UTC in winter)."""
    with caplog.at_level(logging.INFO, logger="flow_steps.data.closes"):
        cut_unclosed(b"Date,Close\n2026-12-03,1\n2026-12-04,2\n", "f.csv", "auto", "XNYS", NOW)
    assert [record.getMessage() for record in caplog.records] == [
        "Dropped 1 bar not closed at 2026-12-04 18:00 UTC (sessions of XNYS): 2026-12-04"
    ]
