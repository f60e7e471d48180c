"""Session checks and scoring a model here: what the complete mutation run of 2026-12-06 (started 15:53) left
alive, or no fast test reached, in `data.sessions` and `deployment.scoring` (`training.evaluation`'s
survivors are equivalent: see the report). Each expected value is worked out by hand from the exchanges'
published holidays or the definitions, never by the code under test. `score` loads a real
pyfunc model logged to a local store (a Python model with given forecasts and multipliers, no TensorFlow).
Tokyo (XTKS): exchange-calendars' rules start on 1997-01-01; the exchange was closed 1997-01-01 to 01-03
(New Year) and 01-04/05 is a weekend, so its first sessions are Mon 01-06, Tue 01-07, Wed 01-08.
"""

import logging
from pathlib import Path

import exchange_calendars
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Run, RunData, RunInfo

from flow_steps.config.calendars import NO_CALENDAR
from flow_steps.config.names import METRIC_N_TEST_DAYS, SCORED_HERE, TAG_STOCK_DATA_SHA256
from flow_steps.data.sessions import Hole, SessionCheck, check_sessions, sessions_between
from flow_steps.deployment.scoring import HoldoutDays, model_score, score, score_from_training


def dates_of(*isos: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(isos)))


def test_only_the_prices_before_a_calendars_first_rules_are_left_out(caplog):
    """Tokyo: the first price (1996-12-30) is before the rules, the second (1997-01-01) is on their first
    day and is kept and checked: a day the exchange was closed, so a non-session. 01-01 -> 01-06 and
    01-06 -> 01-07 leave no session without a price (01-02 and 01-03 were holidays)."""
    with caplog.at_level(logging.WARNING, logger="flow_steps.data.sessions"):
        check = check_sessions(dates_of("1996-12-30", "1997-01-01", "1997-01-06", "1997-01-07"), "XTKS")
    assert check == SessionCheck((), ("1997-01-01",))
    assert len(caplog.records) == 1


def test_a_first_price_before_the_rules_is_left_out_even_when_the_second_is_not():
    """Tokyo: only 1996-12-30 is before the rules; 01-06 then 01-08 leaves Tue 01-07 without a price."""
    check = check_sessions(dates_of("1996-12-30", "1997-01-06", "1997-01-08"), "XTKS")
    assert check == SessionCheck((Hole("1997-01-06", "1997-01-08", 1),), ())


def test_without_a_calendar_the_sessions_are_the_weekdays():
    """calendar=none: Mon 2020-03-02 then Thu 03-05 leaves Tue and Wed without a price (2), Thu then Sat
    03-07 leaves Fri (1); the Saturday is no weekday, so a non-session."""
    check = check_sessions(dates_of("2020-03-02", "2020-03-05", "2020-03-07"), NO_CALENDAR)
    holes = (Hole("2020-03-02", "2020-03-05", 2), Hole("2020-03-05", "2020-03-07", 1))
    assert check == SessionCheck(holes, ("2020-03-07",))


def test_fewer_than_two_prices_give_an_empty_check():
    """One price, no price, or prices all before Tokyo's rules (left out): no hole, no non-session, and the
    summaries are 0."""
    for dates, calendar in (
        (dates_of("2020-03-02"), "XNYS"),
        (dates_of(), "XNYS"),
        (dates_of("1996-12-27", "1996-12-30"), "XTKS"),
    ):
        check = check_sessions(dates, calendar)
        assert check == SessionCheck((), ())
        assert (check.largest_hole, check.missing_sessions) == (0, 0)


def test_holes_of_one_size_are_listed_oldest_first():
    """New York, 2019: of its sessions s0, s1, ..., the prices are on s0, s2, s5, s7, s10, ... (steps of 2
    and 3 in turn), so the holes alternate 1 session (s1, s6, s11, ...) and 2 sessions (s3 s4, s8 s9,
    ...): 50 of each. Largest first, and among holes of one size the oldest first: every 2-session hole in
    date order, then every 1-session hole in date order (100 holes: enough for numpy's default sort, which is
    not stable, to reorder ties)."""
    sessions = exchange_calendars.get_calendar("XNYS", start="2019-01-02", end="2019-12-31").sessions
    kept = [0]
    while len(kept) < 101:
        kept.append(kept[-1] + (2 if len(kept) % 2 else 3))
    iso = [f"{sessions[at]:%Y-%m-%d}" for at in kept]
    pairs = list(zip(iso[:-1], iso[1:], strict=True))
    two = [Hole(before, after, 2) for before, after in pairs[1::2]]
    one = [Hole(before, after, 1) for before, after in pairs[0::2]]
    assert len(two) == len(one) == 50
    assert check_sessions(pd.Series(sessions[kept]), "XNYS").holes == (*two, *one)


# Closes 10, 40, 10, 40, 10: every log return is +-log 4, so the EWMA volatility before each day from the
# third on is log 4 whatever the decay (a weighted mean of equal squares). The last two are the test days.
ALTERNATING = HoldoutDays(
    np.array([10.0, 40.0, 10.0, 40.0, 10.0]), pd.Series(pd.date_range("2020-01-01", periods=5)), 2
)


class GivenForecaster(mlflow.pyfunc.PythonModel):
    """What `score` reads of a loaded model: one-step forecasts and the interval multipliers. Its forecasts
    are the closes before the test days times 1.6 and 0.6 (10 -> 16, 40 -> 24): a wrong `closes` or
    `n_test` changes them or fails."""

    def __init__(self, multipliers: dict[int, float]):
        self.multipliers = multipliers

    def one_step_forecasts(self, closes: np.ndarray, n_test: int) -> np.ndarray:
        return np.asarray(closes)[len(closes) - n_test - 1 : len(closes) - 1] * np.array([1.6, 0.6])

    def predict(self, context, model_input, params=None):  # pyfunc's interface; `score` does not call it
        return model_input


def saved(multipliers: dict[int, float], folder: Path) -> str:
    """The path of a GivenForecaster saved as a pyfunc model (no requirements inferred: fast)."""
    path = folder / "model"
    mlflow.pyfunc.save_model(path, python_model=GivenForecaster(multipliers), pip_requirements=[])
    return str(path)


def test_a_model_is_scored_on_its_forecasts_and_its_80_percent_interval(tmp_path):
    """Forecasts 16 and 24 of the actual 40 and 10: squared errors 24^2 = 576 and 14^2 = 196. Multiplier
    0.5 at 80%: the interval is the forecast times exp(+-0.5 log 4) = /2 and *2, so [8, 32] and [12, 48].
    Winkler at 80% (2 / 0.2 = 10): 40 is 8 above [8, 32]: 24 + 10 * 8 = 104; 10 is 2 below [12, 48]:
    36 + 10 * 2 = 56."""
    losses = score(saved({80: 0.5, 95: 3.0}, tmp_path), ALTERNATING)
    assert losses.squared_error.tolist() == pytest.approx([576.0, 196.0])
    assert losses.interval_score == pytest.approx([104.0, 56.0])


def test_a_model_without_an_80_percent_multiplier_is_scored_without_interval_scores(tmp_path):
    """Squared errors as above; no interval at 80%, so no interval scores (not an error)."""
    losses = score(saved({95: 3.0}, tmp_path), ALTERNATING)
    assert losses.squared_error.tolist() == pytest.approx([576.0, 196.0])
    assert losses.interval_score is None


def test_a_model_whose_training_run_did_not_test_these_days_is_loaded_and_scored_here(tmp_path):
    """A training run without the prices' SHA-256: its predictions cannot be used, so the model at the given
    URI is scored (the losses of the first test above)."""
    train = Run(RunInfo("r" * 32, "0", "user", "FINISHED", 0, 1, "active"), RunData())
    days = HoldoutDays(ALTERNATING.closes, ALTERNATING.dates, 2, "abc")
    losses, source = model_score(saved({80: 0.5}, tmp_path), train, days)
    assert source == SCORED_HERE
    assert losses.squared_error.tolist() == pytest.approx([576.0, 196.0])
    assert losses.interval_score == pytest.approx([104.0, 56.0])


def test_scoring_here_is_logged_with_the_reason_the_predictions_could_not_be_read(tracking, caplog):
    """A training run of these prices and days (SHA-256 "abc", 2 test days) that logged no predictions: the
    log line gives the download's error, which names the missing predictions.csv, not just the run."""
    run_id = tracking.client.create_run(tracking.experiment_id).info.run_id
    tracking.client.set_tag(run_id, TAG_STOCK_DATA_SHA256, "abc")
    tracking.client.log_metric(run_id, METRIC_N_TEST_DAYS, 2)
    days = HoldoutDays(ALTERNATING.closes, ALTERNATING.dates, 2, "abc")
    with caplog.at_level(logging.INFO, logger="flow_steps.deployment.scoring"):
        assert score_from_training(tracking.client.get_run(run_id), days) is None
    [message] = [record.getMessage() for record in caplog.records]
    reason = message.removeprefix(f"No test predictions on training run {run_id} (").removesuffix(
        "): scoring here"
    )
    assert "predictions.csv" in reason


def test_prices_only_on_days_without_a_session_are_named_not_a_calendar_error():
    """Sat 2020-01-04 and Sun 2020-01-05: New York had no session between them, so there are none to
    list and both prices are named as dated on closed days (exchange-calendars refuses to build a calendar
    over a span without sessions: NoSessionsError, which reached the user before)."""
    assert sessions_between("XNYS", pd.Timestamp("2020-01-04"), pd.Timestamp("2020-01-05")).empty
    check = check_sessions(dates_of("2020-01-04", "2020-01-05"), "XNYS")
    assert check == SessionCheck(holes=(), non_sessions=("2020-01-04", "2020-01-05"))
