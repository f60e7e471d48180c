"""Session closes outside exchange-calendars' default span, a price file whose quoted line break makes
rows differ from lines, integer prices cut into windows and a backtest of one fold: what the complete
mutation run of 2026-12-06 found no fast test reaching. Expected closes are worked from the exchanges'
published hours, not from the code: NYSE closes at 16:00 New York time, 21:00 UTC in winter (EST); Tokyo
closed at 15:00 Tokyo time (UTC+9, no daylight saving) before its 2024 extension, 06:00 UTC.
exchange-calendars' default span runs from 20 years before today to a year after it; its XNYS rules have
no first day, its XTKS rules start on 1997-01-01.
"""

import logging

import numpy as np
import pandas as pd

from flow_steps.data.closes import cut_unclosed
from flow_steps.data.sessions import Hole, SessionCheck, check_sessions, session_closes
from flow_steps.model.features import holdout_size, make_windows
from flow_steps.training.evaluation import backtest_summary


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_closes_long_past_and_far_ahead_come_from_a_calendar_over_those_days() -> None:
    """XNYS, both days outside the default span: Monday 2000-01-03 closed at 16:00 EST = 21:00 UTC,
    Tuesday 2040-01-03 will at 21:00 UTC too; Saturday 2000-01-01 is no session (NaT)."""
    days = pd.DatetimeIndex(["2000-01-01", "2000-01-03", "2040-01-03"])
    closes = session_closes("XNYS", days)
    assert closes.index.tolist() == [0, 1, 2]
    assert pd.isna(closes[0])
    assert closes[1] == utc("2000-01-03 21:00")
    assert closes[2] == utc("2040-01-03 21:00")


def test_days_before_a_calendars_first_rules_have_no_close_and_the_others_keep_theirs() -> None:
    """XTKS's rules start on 1997-01-01: Monday 1996-12-30 is before them (NaT, not an error), and
    Wednesday 2000-01-12 (outside the default span) closed at 15:00 Tokyo = 06:00 UTC."""
    closes = session_closes("XTKS", pd.DatetimeIndex(["1996-12-30", "2000-01-12"]))
    assert pd.isna(closes[0])
    assert closes[1] == utc("2000-01-12 06:00")


def test_a_quoted_line_break_rewrites_the_kept_rows_without_an_index_column() -> None:
    """The note "a<newline>b" makes 3 data lines of 2 rows, so the kept rows are written again. At
    12:00 UTC on Friday 2026-12-04, its bar (close 21:00 UTC) is not a close yet: only Thursday's row is
    kept, with the file's own columns and nothing before them."""
    content = b'Date,Close,Note\n2026-12-03,10,"a\nb"\n2026-12-04,11,x\n'
    cut = cut_unclosed(content, "f.csv", "auto", "XNYS", utc("2026-12-04 12:00"))
    assert cut.dropped == ("2026-12-04",)
    assert cut.content == b'Date,Close,Note\n2026-12-03,10,"a\nb"\n'


def test_integer_prices_give_float_windows_and_targets() -> None:
    """Whole prices 1, 2, 3, 4 with window 2: windows [1, 2], [2, 3] and targets 3, 4, all floats."""
    windows, targets = make_windows(np.array([1, 2, 3, 4]), 2)
    assert windows.dtype == np.float64 and targets.dtype == np.float64
    assert windows.tolist() == [[1.0, 2.0], [2.0, 3.0]]
    assert targets.tolist() == [3.0, 4.0]


def test_a_backtest_of_one_fold_is_that_fold_and_its_own_means() -> None:
    """backtest_folds=1 (allowed: 0 turns the backtest off): one fold numbered 0, and each mean over one
    fold is the fold's value, test_rmse 1.5 and test_mae 0.5."""
    fold = pd.DataFrame({"model": ["lstm", "naive"], "rmse": [1.5, 2.5]})
    table, means = backtest_summary([fold], [{"test_rmse": 1.5, "test_mae": 0.5}])
    assert table.columns.tolist() == ["fold", "model", "rmse"]
    assert table.values.tolist() == [[0, "lstm", 1.5], [0, "naive", 2.5]]
    assert means == {"backtest_test_rmse": 1.5, "backtest_test_mae": 0.5}


def test_prices_before_a_calendars_first_rules_are_left_out_of_the_check_with_a_warning(caplog):
    """Tokyo's rules start on 1997-01-01: the two 1996 prices are not checked (no non-session, no
    error), the rest are: Tue 1997-01-07 then Thu 01-09 leaves Wed 01-08 without a price, one hole."""
    dates = pd.Series(pd.to_datetime(["1996-12-27", "1996-12-30", "1997-01-06", "1997-01-07", "1997-01-09"]))
    with caplog.at_level(logging.WARNING, logger="flow_steps.data.sessions"):
        check = check_sessions(dates, "XTKS")
    assert check == SessionCheck((Hole("1997-01-07", "1997-01-09", 1),), ())
    assert [record.getMessage() for record in caplog.records] == [
        "Prices before 1997-01-01 are not checked against XTKS: its rules start there"
    ]


def test_a_first_price_on_a_calendars_first_day_is_checked_without_a_warning(caplog):
    """A price on 1997-01-01 itself is checked: a day Tokyo was closed (New Year, to 01-03), so a
    non-session, and no session is missing before Mon 01-06."""
    dates = pd.Series(pd.to_datetime(["1997-01-01", "1997-01-06"]))
    with caplog.at_level(logging.WARNING, logger="flow_steps.data.sessions"):
        assert check_sessions(dates, "XTKS") == SessionCheck((), ("1997-01-01",))
    assert caplog.records == []


def test_holes_are_listed_largest_first():
    """New York, January 2020: 01-03 then 01-07 misses Mon 01-06 (1 session); 01-07 then 01-13 misses
    01-08, 01-09 and 01-10 (3)."""
    dates = pd.Series(pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-07", "2020-01-13"]))
    assert check_sessions(dates, "XNYS").holes == (
        Hole("2020-01-07", "2020-01-13", 3),
        Hole("2020-01-03", "2020-01-07", 1),
    )


def test_the_holdout_is_the_test_fraction_of_the_rows():
    assert holdout_size(100, 0.2) == 20  # 100 * 0.2
