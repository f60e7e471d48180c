"""Every limit of the deployment rules (degradation, scoring, promotion, registry names), on it and on
each side; expected values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Run, RunData, RunInfo, RunTag
from scipy import stats

from flow_steps.config.errors import PipelineError
from flow_steps.config.names import (
    FIRST_VERSION,
    KEPT,
    MAX_HORIZON,
    PROMOTED,
    TAG_STOCK_DATA_SHA256,
)
from flow_steps.deployment.degradation import realized_metrics
from flow_steps.deployment.evidence import christoffersen, kupiec_pof
from flow_steps.deployment.promotion import (
    Promotion,
    PromotionRules,
    decide_promotion,
    evidence_metrics,
    train_run_id,
    version_description,
)
from flow_steps.deployment.scoring import (
    DailyLosses,
    day_text,
    holdout_days,
    losses_from_predictions,
    same_test_days,
)
from flow_steps.deployment.versions import MODEL_NAME_PATTERN, RUNS_URI, model_description


def test_a_naive_rmse_of_zero_gives_no_ratio():
    scored = pd.DataFrame(
        {
            "forecast_run_id": ["a", "a"],
            "error": [3.0, -4.0],
            "naive_error": [0.0, 0.0],
            "inside_80": [1.0, 0.0],
        }
    ).assign(inside_95=np.nan)
    found = realized_metrics(scored)
    # RMSE of 3 and -4: sqrt((9 + 16) / 2)
    assert found["rmse"] == pytest.approx(math.sqrt(12.5))
    assert math.isnan(found["rmse_vs_naive"])
    assert (found["forecasts"], found["days"], found["coverage_80"]) == (1.0, 2.0, 0.5)
    assert math.isnan(found["coverage_95"])


# The champion moves only when the three conditions hold; each limit on it and on each side.
CHAMPION = DailyLosses(np.ones(20), np.ones(20))
# Mean squared error 0.5625 (RMSE 0.75, 25% lower than 1, exactly), noisy enough for a moderate p-value:
# d = [0.0625, -0.9375] x 10, mean -0.4375, spread 0.5.
CHALLENGER = DailyLosses(np.tile([1.0625, 0.0625], 10), np.ones(20))


@pytest.mark.parametrize(
    ("min_improvement", "decision"),
    [(np.nextafter(0.25, 0), PROMOTED), (0.25, PROMOTED), (np.nextafter(0.25, 1), KEPT)],
)
def test_the_improvement_must_reach_min_improvement(min_improvement, decision):
    promotion = decide_promotion(CHALLENGER, "3", CHAMPION, PromotionRules(0.05, min_improvement))
    assert promotion.against_champion.improvement == 0.25
    assert promotion.decision == decision
    enough = "at least" if decision == PROMOTED else "under"
    assert f"RMSE 0.75 against champion version 3's 1 (25.00% lower, {enough} min_improvement 25.00%)" in (
        promotion.reason
    )


def test_the_p_value_must_reach_promotion_alpha():
    # The statistic is -0.4375 / (0.5 / sqrt(20)) * sqrt(19 / 20) = -3.8136...; p = P(t_19 <= it).
    p_value = decide_promotion(CHALLENGER, "3", CHAMPION).against_champion.accuracy.p_value
    assert p_value == pytest.approx(stats.t(19).cdf(-0.4375 / (0.5 / math.sqrt(20)) * math.sqrt(0.95)))
    for alpha, decision in (
        (np.nextafter(p_value, 0), KEPT),
        (p_value, PROMOTED),
        (np.nextafter(p_value, 1), PROMOTED),
    ):
        promotion = decide_promotion(CHALLENGER, "3", CHAMPION, PromotionRules(alpha, 0.005))
        assert promotion.decision == decision, alpha
        assert ("cannot tell it apart from luck" in promotion.reason) == (decision == KEPT)


def test_significantly_worse_intervals_keep_the_champion():
    worse = DailyLosses(CHALLENGER.squared_error, np.tile([2.0, 3.0], 10))  # every day's score higher
    promotion = decide_promotion(worse, "3", CHAMPION)
    assert promotion.decision == KEPT
    assert "80% interval score significantly worse (p=" in promotion.reason
    # A little worse on average but noisy: not significantly, and it is promoted.
    noisy = DailyLosses(CHALLENGER.squared_error, np.tile([1.5, 0.6], 10))
    promotion = decide_promotion(noisy, "3", CHAMPION)
    assert promotion.decision == PROMOTED and promotion.against_champion.intervals.p_value > 0.05
    assert "80% interval score not significantly worse" in promotion.reason


@pytest.mark.parametrize(("days", "tested"), [(15, False), (16, True)])
def test_the_promotion_test_needs_16_days(days, tested):
    champion, better = DailyLosses(np.ones(days)), DailyLosses(np.tile([0.625, 0.5], 8)[:days])
    promotion = decide_promotion(better, "3", champion)
    assert promotion.promotes == tested
    assert (f"{days} days, too few for the Diebold-Mariano test (needs 16)" in promotion.reason) != tested


def test_the_first_version_promotes_and_an_unscored_champion_is_kept():
    assert decide_promotion(CHALLENGER, None, None).promotes
    assert decide_promotion(CHALLENGER, None, None).decision == FIRST_VERSION
    kept = decide_promotion(CHALLENGER, "2", None)
    assert (kept.decision, kept.promotes) == (KEPT, False)
    assert kept.reason == "champion version 2 cannot be scored on these test days"


def test_skill_over_naive_is_the_same_rule_and_its_evidence_is_logged():
    skilled = decide_promotion(CHALLENGER, None, None, naive=DailyLosses(np.ones(20)))
    assert not skilled.no_skill and skilled.reason == "no champion yet: the first version becomes champion"
    unskilled = decide_promotion(CHAMPION, None, None, naive=DailyLosses(np.ones(20)))
    assert unskilled.no_skill and unskilled.reason.endswith(
        "with no evidence of skill over the naive forecast"
    )
    metrics = evidence_metrics(decide_promotion(CHALLENGER, "3", CHAMPION, naive=DailyLosses(np.ones(20))))
    assert metrics["promotion_improvement"] == metrics["skill_improvement"] == 0.25
    assert metrics["promotion_mean_loss_difference"] == -0.4375
    assert metrics["promotion_p_value"] == metrics["skill_p_value"] < 0.05
    assert set(metrics) == {
        "promotion_dm_statistic",
        "promotion_p_value",
        "promotion_mean_loss_difference",
        "promotion_improvement",
        "promotion_interval_dm_statistic",
        "promotion_interval_p_value",
        "skill_dm_statistic",
        "skill_p_value",
        "skill_improvement",
    }


PRICES = pd.DataFrame(
    {"Date": pd.date_range("2021-01-01", periods=10, freq="D"), "Close": np.arange(1.0, 11.0)}
)


def test_holdout_days_are_the_last_rounded_fraction():
    # 10 rows, 0.25: round(2.5) = 2 test days (half to even), the closes 9 and 10.
    days = holdout_days(PRICES, 0.25, "abc")
    assert (days.n_test, days.actual.tolist(), days.prices_sha256) == (2, [9.0, 10.0], "abc")


def training_run(sha: str | None, n_test: float) -> Run:
    tags = [RunTag(TAG_STOCK_DATA_SHA256, sha)] if sha is not None else []
    data = RunData(metrics=[Metric("n_test_days", n_test, 0, 0)], tags=tags)
    info = RunInfo("r" * 32, "0", "user", "FINISHED", 0, 1, "active")
    return Run(info, data)


@pytest.mark.parametrize(
    ("sha", "n_test", "reused"),
    [("abc", 2, True), ("abd", 2, False), (None, 2, False), ("abc", 3, False), ("abc", 1, False)],
)
def test_a_training_score_is_reused_only_for_the_same_file_and_days(sha, n_test, reused):
    days = holdout_days(PRICES, 0.25, "abc")
    assert same_test_days(training_run(sha, n_test), days) == reused


def test_an_unknown_file_never_reuses_a_score():
    days = holdout_days(PRICES, 0.25, "")
    assert not same_test_days(training_run("", 2), days)


def test_a_training_runs_predictions_give_the_daily_losses_of_exactly_these_days():
    days = holdout_days(PRICES, 0.25, "abc")  # actual 9 and 10
    table = pd.DataFrame({"actual": [9.0, 10.0], "lstm": [8.0, 10.5], "lstm_lower_80": [7.0, 10.0]})
    table["lstm_upper_80"] = [8.5, 11.0]
    losses = losses_from_predictions(table, days)
    assert losses.squared_error.tolist() == [1.0, 0.25]
    # Winkler at 80% (2 / 0.2 = 10): day 1 width 1.5 + 10 * (9 - 8.5) = 6.5; day 2 width 1, inside: 1.
    assert losses.interval_score.tolist() == pytest.approx([6.5, 1.0])
    assert losses.rmse == pytest.approx(math.sqrt(0.625))
    assert losses_from_predictions(table.drop(columns=["lstm_lower_80"]), days).interval_score is None
    assert losses_from_predictions(table.iloc[:1], days) is None  # other days
    assert losses_from_predictions(table.assign(actual=[9.0, 11.0]), days) is None  # other closes


def test_days_are_written_as_iso_dates():
    assert day_text(pd.Timestamp("2021-03-04 15:30")) == "2021-03-04"
    assert day_text("2021-03-04") == "2021-03-04"


def test_the_description_gives_the_ratio_the_days_and_the_coverage():
    days = holdout_days(PRICES, 0.25, "abc")
    promotion = Promotion(PROMOTED, "why")
    text = version_description(1.5, 2.0, days, promotion, {"test_coverage_80": 0.8, "test_coverage_95": 0.95})
    # 1.5 / 2 = 0.75; test days 2021-01-09 and -10; trained through the day before, 2021-01-08.
    assert text == (
        "Test RMSE 1.5 = 0.750 x naive over 2 days 2021-01-09..2021-01-10; 80%/95% intervals covered "
        f"80.0%/95.0%; trained through 2021-01-08; {PROMOTED}: why"
    )
    assert "intervals covered" not in version_description(
        1.5, 2.0, days, promotion, {"test_coverage_80": 0.8}
    )
    assert "intervals covered" not in version_description(1.5, 2.0, days, promotion)


RUN_ID = "0123456789abcdef0123456789abcdef"


def test_a_runs_uri_needs_a_32_digit_run_id_and_a_path():
    assert train_run_id(f"runs:/{RUN_ID}/model") == RUN_ID
    for bad in (f"runs:/{RUN_ID[:-1]}/model", f"runs:/{RUN_ID}0/model", f"runs:/{RUN_ID}/", "models:/m/1"):
        assert RUNS_URI.match(bad) is None
        with pytest.raises(PipelineError, match=f"^model_uri '{bad}' is not a runs:/"):
            train_run_id(bad)


# Model names: a first character and up to 99 more.
@pytest.mark.parametrize(("length", "valid"), [(1, True), (99, True), (100, True), (101, False)])
def test_a_model_name_has_at_most_100_characters(length, valid):
    assert bool(MODEL_NAME_PATTERN.match("m" * length)) == valid


def test_the_registry_description_names_the_horizon_and_the_rule():
    text = model_description("msft-lstm")
    assert text.startswith("msft-lstm: forecasts the next trading days' closing prices")
    assert f"(1-{MAX_HORIZON} trading days)" in text and "(1-260 trading days)" in text
    assert "by evidence: a one-sided Diebold-Mariano test" in text


def test_christoffersen_needs_two_days_and_takes_exactly_two():
    """[hit, miss] at 80%: Kupiec's LR = -2 ln(0.8 * 0.2 / (0.5 * 0.5)) = -2 ln 0.64; the one transition
    0 -> 1 makes pi01 = pi = 1, so the independence part is 0; chi-squared(2)'s survival is exp(-x / 2):
    p = 0.64."""
    result = christoffersen(np.array([0, 1]), 80)
    assert result.n == 2
    assert result.statistic == pytest.approx(-2 * math.log(0.64))
    assert result.p_value == pytest.approx(0.64)
    with pytest.raises(ValueError, match="at least 2 days of 0 \\(hit\\) or 1 \\(miss\\)"):
        christoffersen(np.array([1]), 80)


def test_christoffersen_with_a_miss_followed_once_by_a_miss_and_once_by_a_hit():
    """[miss, miss, hit] at 80%: pairs 1 -> 1 and 1 -> 0, so pi11 = 1 / 2 = pi and the independence part
    is 0; Kupiec's part with 2 misses of 3: -2 (ln 0.8 + 2 ln 0.2 - ln(1/3) - 2 ln(2/3))."""
    statistic = -2 * (math.log(0.8) + 2 * math.log(0.2) - math.log(1 / 3) - 2 * math.log(2 / 3))
    result = christoffersen(np.array([1, 1, 0]), 80)
    assert result.statistic == pytest.approx(statistic)
    assert result.p_value == pytest.approx(math.exp(-statistic / 2))


def test_kupiec_takes_one_day_and_refuses_none():
    """0 misses of 1 at 80%: -2 ln 0.8; chi-squared(1)'s survival is erfc(sqrt(x / 2))."""
    result = kupiec_pof(0, 1, 80)
    assert (result.n, result.statistic) == (1, pytest.approx(-2 * math.log(0.8)))
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(-math.log(0.8))))
    with pytest.raises(ValueError, match="misses must be between 0 and n, got 0 of 0"):
        kupiec_pof(0, 0, 80)
