"""Scoring from a training run's logged predictions, the naive losses and a test's level: what the complete
mutation run of 2026-12-06 found no fast test reaching. Each case worked out by hand; the training runs
are written to an in-process sqlite store."""

import logging
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from flow_steps.config.names import (
    METRIC_INTERVAL_P_VALUE,
    METRIC_INTERVAL_STATISTIC,
    METRIC_N_TEST_DAYS,
    METRIC_PROMOTION_IMPROVEMENT,
    METRIC_PROMOTION_MEAN_LOSS_DIFFERENCE,
    METRIC_PROMOTION_P_VALUE,
    METRIC_PROMOTION_STATISTIC,
    METRIC_SKILL_IMPROVEMENT,
    METRIC_SKILL_P_VALUE,
    METRIC_SKILL_STATISTIC,
    PREDICTIONS_PATH,
    SCORED_FROM_TRAINING,
    TAG_STOCK_DATA_SHA256,
)
from flow_steps.config.spec import significance_level
from flow_steps.deployment.evidence import TestResult
from flow_steps.deployment.promotion import Comparison, Promotion, PromotionRules, compare, evidence_metrics
from flow_steps.deployment.scoring import (
    DailyLosses,
    HoldoutDays,
    model_score,
    naive_losses,
    score_from_training,
)

# Four closes, the last two are the test days: 13 and 12.
DAYS = HoldoutDays(
    closes=np.array([10.0, 11.0, 13.0, 12.0]),
    dates=pd.Series(pd.date_range("2020-01-01", periods=4)),
    n_test=2,
    prices_sha256="abc",
)
# The LSTM's forecasts 12 and 12.5 and their 80% intervals [12, 15] and [12.5, 14].
PREDICTIONS = pd.DataFrame(
    {
        "actual": [13.0, 12.0],
        "lstm": [12.0, 12.5],
        "lstm_lower_80": [12.0, 12.5],
        "lstm_upper_80": [15.0, 14.0],
    }
)
# Squared errors: (13 - 12)^2 = 1 and (12 - 12.5)^2 = 0.25. Winkler scores at 80% (alpha 0.2, 2 / alpha
# = 10): 13 inside [12, 15] scores its width, 3; 12 is 0.5 below [12.5, 14]: 1.5 + 10 * 0.5 = 6.5.
SQUARED_ERRORS = [1.0, 0.25]
INTERVAL_SCORES = [3.0, 6.5]


def test_naive_losses_set_each_test_day_against_the_close_before():
    """Closes 10, 11, 13, 12, 15 with two test days (12 and 15): forecasts 13 and 12, squared errors
    (12 - 13)^2 = 1 and (15 - 12)^2 = 9."""
    days = HoldoutDays(
        np.array([10.0, 11.0, 13.0, 12.0, 15.0]), pd.Series(pd.date_range("2020-01-01", periods=5)), 2
    )
    losses = naive_losses(days)
    assert losses.squared_error.tolist() == [1.0, 9.0]
    assert losses.interval_score is None


def training_run(tracking, folder: Path, table: pd.DataFrame | None = PREDICTIONS, sha: str = "abc") -> Run:
    """A train_model run as registration reads it: its prices' SHA-256, its number of test days and its
    predictions table (left out when `table` is None)."""
    run_id = tracking.client.create_run(tracking.experiment_id).info.run_id
    tracking.client.set_tag(run_id, TAG_STOCK_DATA_SHA256, sha)
    tracking.client.log_metric(run_id, METRIC_N_TEST_DAYS, 2)
    if table is not None:
        path = folder / Path(PREDICTIONS_PATH).name
        table.to_csv(path, index=False)
        tracking.client.log_artifact(run_id, str(path), artifact_path=str(Path(PREDICTIONS_PATH).parent))
    return tracking.client.get_run(run_id)


def test_a_training_run_tested_on_the_same_days_gives_its_logged_losses(tracking, tmp_path):
    losses = score_from_training(training_run(tracking, tmp_path), DAYS)
    assert losses.squared_error.tolist() == SQUARED_ERRORS
    assert losses.interval_score == pytest.approx(INTERVAL_SCORES, abs=1e-12)
    without_interval = PREDICTIONS.drop(columns=["lstm_upper_80"])
    losses = score_from_training(training_run(tracking, tmp_path, without_interval), DAYS)
    assert losses.squared_error.tolist() == SQUARED_ERRORS and losses.interval_score is None


@pytest.mark.parametrize(
    "table, sha, days",
    [
        (PREDICTIONS, "other", DAYS),  # other prices
        (PREDICTIONS, "abc", HoldoutDays(DAYS.closes, DAYS.dates, 2, "")),  # prices unknown
        (PREDICTIONS, "abc", HoldoutDays(DAYS.closes, DAYS.dates, 3, "abc")),  # another number of days
        (None, "abc", DAYS),  # no predictions logged
        (PREDICTIONS.assign(actual=[13.0, 11.0]), "abc", DAYS),  # not these closes
        (PREDICTIONS.drop(columns=["lstm"]), "abc", DAYS),  # no LSTM column
        (pd.concat([PREDICTIONS, PREDICTIONS.tail(1)]), "abc", DAYS),  # three rows for two days
        (PREDICTIONS.assign(actual=[13.000001, 12.0]), "abc", DAYS),  # 1e-6 off 13: 7.7e-8 relative
    ],
    ids=[
        "other-prices",
        "unknown-prices",
        "other-days",
        "no-table",
        "other-closes",
        "no-lstm",
        "rows",
        "1e-7",
    ],
)
def test_anything_but_the_same_test_days_is_scored_again(tracking, tmp_path, table, sha, days):
    assert score_from_training(training_run(tracking, tmp_path, table, sha), days) is None


def test_a_training_run_without_predictions_says_so_and_why(tracking, tmp_path, caplog):
    run = training_run(tracking, tmp_path, None)
    with caplog.at_level(logging.INFO, logger="flow_steps.deployment.scoring"):
        assert score_from_training(run, DAYS) is None
    [message] = [record.getMessage() for record in caplog.records]
    assert message.startswith(f"No test predictions on training run {run.info.run_id} (")
    assert message.endswith("): scoring here")


def test_model_score_says_where_the_losses_came_from(tracking, tmp_path):
    losses, source = model_score("runs:/unused/model", training_run(tracking, tmp_path), DAYS)
    assert source == SCORED_FROM_TRAINING and losses.squared_error.tolist() == SQUARED_ERRORS
    with pytest.raises(MlflowException):  # nothing logged: the model itself is loaded, and here is none
        model_score(
            "runs:/0123456789abcdef0123456789abcdef/model", training_run(tracking, tmp_path, None), DAYS
        )


def test_a_significance_level_is_a_float_above_zero_and_at_most_a_half():
    level = significance_level("alpha", "a test's level")
    assert (level.name, level.kind, level.default, level.help) == ("alpha", "float", 0.05, "a test's level")
    assert (level.low, level.high, level.low_open, level.high_open) == (0, 0.5, True, False)
    assert significance_level("alpha", "", default=0.01).default == 0.01


def test_evidence_metrics_log_each_test_against_the_champion_and_the_naive_forecast():
    """RMSE 0.9 against the champion's 1.0: improvement 1 - 0.9 / 1.0 = 0.1; against the naive 1.2: 0.25."""
    accuracy = TestResult(statistic=-2.0, p_value=0.03, n=30, mean_difference=-0.1)
    intervals = TestResult(statistic=1.5, p_value=0.07, n=30)
    champion = Comparison(rmse=0.9, other_rmse=1.0, accuracy=accuracy, intervals=intervals)
    naive = Comparison(rmse=0.9, other_rmse=1.2, accuracy=TestResult(statistic=-1.0, p_value=0.16, n=30))
    assert evidence_metrics(Promotion("promoted", "", champion, naive)) == pytest.approx(
        {
            METRIC_PROMOTION_STATISTIC: -2.0,
            METRIC_PROMOTION_P_VALUE: 0.03,
            METRIC_PROMOTION_MEAN_LOSS_DIFFERENCE: -0.1,
            METRIC_PROMOTION_IMPROVEMENT: 0.1,
            METRIC_INTERVAL_STATISTIC: 1.5,
            METRIC_INTERVAL_P_VALUE: 0.07,
            METRIC_SKILL_STATISTIC: -1.0,
            METRIC_SKILL_P_VALUE: 0.16,
            METRIC_SKILL_IMPROVEMENT: 0.25,
        }
    )
    without_intervals = Comparison(rmse=0.9, other_rmse=1.0, accuracy=accuracy)
    assert set(evidence_metrics(Promotion("kept", "", without_intervals))) == {
        METRIC_PROMOTION_STATISTIC,
        METRIC_PROMOTION_P_VALUE,
        METRIC_PROMOTION_MEAN_LOSS_DIFFERENCE,
        METRIC_PROMOTION_IMPROVEMENT,
    }
    assert evidence_metrics(Promotion("first version", "")) == {}


def test_too_few_days_for_a_test_still_give_the_mean_loss_difference_and_the_rmses():
    """Squared errors [1, 4] against [4, 4]: mean difference (-3 + 0) / 2 = -1.5; no test: p = 1."""
    comparison = compare(DailyLosses(np.array([1.0, 4.0])), DailyLosses(np.array([4.0, 4.0])))
    accuracy = comparison.accuracy
    assert (accuracy.n, accuracy.p_value, accuracy.mean_difference) == (2, 1.0, -1.5)
    assert math.isnan(accuracy.statistic)
    words = comparison.words(PromotionRules(), "champion version 1")
    assert words.startswith("RMSE ")
    assert words.endswith("2 days, too few for the Diebold-Mariano test (needs 16)")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the mean of no days
        none = compare(DailyLosses(np.array([])), DailyLosses(np.array([])))
    assert none.accuracy.n == 0 and math.isnan(none.accuracy.mean_difference)
