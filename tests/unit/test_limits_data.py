"""Every limit of the data checks, tested on it and on each side (expected values worked out by hand)."""

from __future__ import annotations

import pandas as pd
import pytest

from flow_steps.config.declarations import MAX_ROW_LIMIT
from flow_steps.config.errors import DataValidationError, PipelineError, one_line
from flow_steps.config.secrets import mask_secrets
from flow_steps.config.values import PriceChecks
from flow_steps.data.ingest import clean_prices, daily_moves, suspect_move_message, validate_prepared
from flow_steps.data.reading import detect_separator, read_price_table
from flow_steps.data.sessions import Hole, check_sessions, describe_non_sessions, next_sessions
from flow_steps.data.tickers import normalize_ticker, parse_tickers

NO_CALENDAR_CHECKS = PriceChecks(calendar="none")


def raw(rows: list[tuple[str, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["Date", "Close"], dtype=object)


def daily(n_rows: int, missing: int) -> pd.DataFrame:
    """`n_rows` consecutive days from 2020-01-01, the last `missing` of them without a price."""
    days = pd.date_range("2020-01-01", periods=n_rows).strftime("%Y-%m-%d")
    return raw([(day, None if i >= n_rows - missing else "10") for i, day in enumerate(days)])


# At most 5% of the rows may miss a value: 5 of 100 is exactly 5%.
@pytest.mark.parametrize(("missing", "refused"), [(4, False), (5, False), (6, True)])
def test_the_missing_share_limit_is_five_percent_inclusive(missing, refused):
    frame = daily(100, missing)
    if refused:
        with pytest.raises(DataValidationError, match=r"^6 of 100 rows \(6%\).* at most 5% may be missing"):
            clean_prices(frame, checks=NO_CALENDAR_CHECKS)
    else:
        prepared, report = clean_prices(frame, checks=NO_CALENDAR_CHECKS)
        assert (report.missing_dropped, len(prepared)) == (missing, 100 - missing)


# With no calendar, max_gap_days=10 allows 2020-01-01 -> 2020-01-11 (10 days) and refuses 11.
@pytest.mark.parametrize(("second", "gap"), [("2020-01-10", 9), ("2020-01-11", 10)])
def test_a_gap_of_max_gap_days_is_allowed(second, gap):
    _, report = clean_prices(raw([("2020-01-01", "1"), (second, "1")]), checks=NO_CALENDAR_CHECKS)
    assert report.largest_gap_days == gap
    assert report.session_holes == ()


def test_a_gap_one_day_over_max_gap_days_is_refused():
    with pytest.raises(
        DataValidationError, match=r"2020-01-01 and 2020-01-12 \(11 days, .*max_gap_days=10\)"
    ):
        clean_prices(raw([("2020-01-01", "1"), ("2020-01-12", "1")]), checks=NO_CALENDAR_CHECKS)


def test_a_single_price_has_no_gap_no_move_and_is_not_newest_first():
    _, report = clean_prices(raw([("2020-01-01", "5")]), checks=NO_CALENDAR_CHECKS)
    assert (report.largest_gap_days, report.largest_daily_move, report.newest_first) == (0, 0.0, False)
    # Two rows in descending order are newest first.
    _, report = clean_prices(raw([("2020-01-02", "5"), ("2020-01-01", "5")]), checks=NO_CALENDAR_CHECKS)
    assert report.newest_first


# XNYS, March 2020 (no holiday): Mon 2 -> Wed 4 misses 1 session (Tue 3), -> Thu 5 2, -> Fri 6 3.
@pytest.mark.parametrize(("second", "missing"), [("2020-03-04", 1), ("2020-03-05", 2)])
def test_a_hole_of_max_gap_sessions_is_allowed_and_named(second, missing):
    checks = PriceChecks(calendar="XNYS", max_gap_sessions=2)
    _, report = clean_prices(raw([("2020-03-02", "1"), (second, "1")]), checks=checks)
    assert report.session_holes == (Hole("2020-03-02", second, missing),)
    assert report.largest_gap_sessions == missing


def test_a_hole_one_session_over_max_gap_sessions_is_refused():
    checks = PriceChecks(calendar="XNYS", max_gap_sessions=2)
    with pytest.raises(
        DataValidationError, match=r"^no prices for 3 sessions of XNYS .*max_gap_sessions=2\)"
    ):
        clean_prices(raw([("2020-03-02", "1"), ("2020-03-06", "1")]), checks=checks)


def test_consecutive_sessions_leave_no_hole():
    found = check_sessions(pd.Series(pd.to_datetime(["2020-03-02", "2020-03-03"])), "XNYS")
    assert (found.holes, found.largest_hole, found.missing_sessions) == ((), 0, 0)


# A move of exactly max_daily_move is not beyond it: 10 -> 15 is +50% (15 / 10 = 1.5, exactly).
@pytest.mark.parametrize(
    ("after", "suspect"), [(14.99, False), (15.0, False), (15.01, True), (5.0, False), (4.99, True)]
)
def test_a_move_of_exactly_max_daily_move_is_not_suspect(after, suspect):
    prices = pd.DataFrame({"Date": pd.to_datetime(["2020-01-01", "2020-01-02"]), "Close": [10.0, after]})
    largest, moves = daily_moves(prices, 0.5)
    assert largest == pytest.approx(abs(after / 10 - 1))
    assert bool(moves) == suspect


def test_on_suspect_move_fail_refuses_only_beyond_the_limit():
    checks = PriceChecks(calendar="none", max_daily_move=0.5, on_suspect_move="fail")
    clean_prices(raw([("2020-01-01", "10"), ("2020-01-02", "15")]), checks=checks)
    with pytest.raises(DataValidationError, match=r"^'Close' moved \+60.0% .*\(on_suspect_move=fail\)$"):
        clean_prices(raw([("2020-01-01", "10"), ("2020-01-02", "16")]), checks=checks)


def test_moves_come_largest_first_and_the_message_counts_the_others():
    prices = pd.DataFrame(
        {"Date": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"]), "Close": [10.0, 20.0, 50.0]}
    )
    largest, moves = daily_moves(prices, 0.5)
    # 10 -> 20 is +100%, 20 -> 50 is +150%: the second first.
    assert largest == pytest.approx(1.5)
    assert [move.date for move in moves] == ["2020-01-03", "2020-01-02"]
    assert suspect_move_message(moves, "Close").startswith("'Close' moved +150.0% in one day on 2020-01-03")
    assert " and 1 more, " in suspect_move_message(moves, "Close")
    assert " more" not in suspect_move_message(moves[:1], "Close")


@pytest.mark.parametrize(("price", "refused"), [("0", True), ("-1", True), ("0.0001", False)])
def test_prices_must_be_above_zero(price, refused):
    frame = raw([("2020-01-01", price), ("2020-01-02", "1")])
    if refused:
        with pytest.raises(DataValidationError, match="non-positive price"):
            clean_prices(frame, checks=NO_CALENDAR_CHECKS)
        with pytest.raises(DataValidationError, match="has non-positive prices"):
            validate_prepared(frame, "prepared.csv")
    else:
        assert clean_prices(frame, checks=NO_CALENDAR_CHECKS)[0]["Close"].tolist() == [0.0001, 1.0]
        assert validate_prepared(frame, "prepared.csv")["Close"].tolist() == [0.0001, 1.0]


def test_max_row_limit_keeps_the_newest_rows_and_counts_the_rest():
    frame = daily(5, 0)
    prepared, report = clean_prices(frame, max_row_limit=5, checks=NO_CALENDAR_CHECKS)
    assert (len(prepared), report.limit_dropped) == (5, 0)
    prepared, report = clean_prices(frame, max_row_limit=4, checks=NO_CALENDAR_CHECKS)
    assert (prepared["Date"].iloc[0].strftime("%Y-%m-%d"), report.limit_dropped) == ("2020-01-02", 1)
    prepared, report = clean_prices(frame, max_row_limit=1, checks=NO_CALENDAR_CHECKS)
    assert (len(prepared), report.limit_dropped) == (1, 4)


def test_max_row_limit_is_refused_below_one_where_it_is_declared():
    """The range is the declaration's (click and the driver check it); clean_prices takes a checked int."""
    MAX_ROW_LIMIT.check(1)
    with pytest.raises(PipelineError, match="max_row_limit must be at least 1, got 0"):
        MAX_ROW_LIMIT.check(0)


# The first line of a refused page is shown whole up to its limit (80 for HTML), else cut to 77 + "...".
def test_a_refused_page_shows_its_first_line_up_to_the_limit():
    exactly = "<" + "x" * 79
    with pytest.raises(DataValidationError, match=f"not CSV: {exactly}$"):
        read_price_table(exactly, "page.html")
    with pytest.raises(DataValidationError, match=f"not CSV: {'<' + 'x' * 76}\\.\\.\\.$"):
        read_price_table(exactly + "y", "page.html")


def test_a_header_without_any_separator_is_read_as_comma_separated():
    assert detect_separator("Date\n2020-01-01", "one-column.csv") == ","
    assert detect_separator("Date;Close\n", "semi.csv") == ";"
    with pytest.raises(DataValidationError, match=r"separates its fields with '\|'"):
        detect_separator("Date|Close\n", "pipes.csv")


# Tickers: a first character, then at most 19 more (20 in all).
@pytest.mark.parametrize(("length", "refused"), [(1, False), (19, False), (20, False), (21, True)])
def test_a_ticker_has_at_most_twenty_characters(length, refused):
    symbol = "A" * length
    if refused:
        with pytest.raises(PipelineError, match="at most 20"):
            normalize_ticker(symbol)
    else:
        assert normalize_ticker(symbol.lower()) == symbol


def test_a_ticker_list_keeps_the_first_of_each_and_refuses_an_empty_one():
    assert parse_tickers(" msft ,AAPL,,msft") == ["MSFT", "AAPL"]
    with pytest.raises(PipelineError, match="names no ticker"):
        parse_tickers(" , ")


# A key from the environment is masked from 4 characters on; a shorter one would mask common words.
@pytest.mark.parametrize(("key", "masked"), [("abc", False), ("abcd", True), ("abcde", True)])
def test_keys_of_four_characters_or_more_are_masked(monkeypatch, key, masked):
    monkeypatch.setenv("QUANDL_API_KEY", key)
    monkeypatch.delenv("NASDAQ_DATA_LINK_API_KEY", raising=False)
    assert mask_secrets(f"sent {key} twice: {key}") == (
        "sent *** twice: ***" if masked else f"sent {key} twice: {key}"
    )


def test_key_like_query_values_are_masked_but_placeholders_kept(monkeypatch):
    monkeypatch.delenv("QUANDL_API_KEY", raising=False)
    monkeypatch.delenv("NASDAQ_DATA_LINK_API_KEY", raising=False)
    assert mask_secrets("https://h/x?api_key=s3cr3t&b=1") == "https://h/x?api_key=***&b=1"
    assert mask_secrets("https://h/x?api_key=${QUANDL_API_KEY}") == "https://h/x?api_key=${QUANDL_API_KEY}"
    assert one_line(ValueError("two\n  lines?token=abc")) == "two lines?token=***"


def test_a_hole_of_one_session_is_singular():
    assert Hole("2020-03-02", "2020-03-04", 1).describe() == "1 session between 2020-03-02 and 2020-03-04"
    assert Hole("2020-03-02", "2020-03-05", 2).describe() == "2 sessions between 2020-03-02 and 2020-03-05"


# Three non-session dates are all shown; a fourth is counted.
def test_non_sessions_show_three_then_count_the_rest():
    three = ("2016-12-24", "2016-12-25", "2016-12-31")
    assert describe_non_sessions(three[:1], "XNYS") == "1 price dated on days XNYS was closed: 2016-12-24"
    assert describe_non_sessions(three, "XNYS").endswith("2016-12-24, 2016-12-25, 2016-12-31")
    assert describe_non_sessions((*three, "2017-01-01"), "XNYS").endswith("2016-12-31 and 1 more")


# XNYS after Fri 2020-12-18: Mon 21, Tue 22, Wed 23, Thu 24 (Fri 25 is Christmas), Mon 28.
def test_next_sessions_skip_weekends_and_holidays():
    found = next_sessions("XNYS", pd.Timestamp("2020-12-18"), 5)
    assert [f"{day:%Y-%m-%d}" for day in found] == [
        "2020-12-21",
        "2020-12-22",
        "2020-12-23",
        "2020-12-24",
        "2020-12-28",
    ]
    assert len(next_sessions("XNYS", pd.Timestamp("2020-12-18"), 40)) == 40
