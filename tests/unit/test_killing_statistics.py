"""The statistics of promotion and monitoring (deployment/evidence.py, promotion.py, degradation.py): what
the complete mutation run of 2026-12-06 found no fast test reaching. Each case worked out by hand; scipy
only turns a hand statistic into a p-value, and t with 2 degrees of freedom is written out:
P(T <= t) = 1/2 + t / (2 sqrt(2 + t^2))."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from flow_steps.config.names import (
    DATE_COLUMN,
    DAYS_AHEAD_COLUMN,
    FORECAST_COLUMN,
    KEPT,
    LAST_CLOSE_COLUMN,
    METRIC_TESTED_DAYS,
    MODEL_VERSION_COLUMN,
    PRICE_COLUMN,
    PROMOTED,
)
from flow_steps.deployment.degradation import RUN_COLUMN, by_version, judge, one_step_days, scored_days
from flow_steps.deployment.evidence import christoffersen, dm_hln_test
from flow_steps.deployment.promotion import Comparison, PromotionRules, decide_promotion
from flow_steps.deployment.scoring import DailyLosses

# Diebold-Mariano


def test_dm_by_default_tests_that_the_first_loss_is_lower():
    """d = [1, 2, 6]: mean 3, centred [-2, -1, 3], gamma_0 = 14 / 3; DM = 3 / sqrt(14 / 9) = 9 / sqrt(14),
    HLN's factor sqrt(2 / 3): statistic 9 / sqrt(21); P(t_2 <= it) = 1/2 + 9 / (2 sqrt(123))."""
    result = dm_hln_test(np.array([1.0, 2.0, 6.0]), np.zeros(3))
    assert result.statistic == pytest.approx(9 / math.sqrt(21))
    assert result.p_value == pytest.approx(0.5 + 9 / (2 * math.sqrt(123)))


def test_dm_with_a_two_day_horizon_on_three_days():
    """d = [1, 2, 6], h = 2: n + 1 - 2h + h(h-1)/n = 2/3 > 0, so three days are enough. gamma_1 =
    ((-1)(-2) + 3(-1)) / 3 = -1/3, variance 14/3 - 2/3 = 4; DM = 3 / sqrt(4 / 3) = 3 sqrt(3) / 2, HLN's
    factor sqrt((2/3) / 3) = sqrt(2) / 3: statistic sqrt(6) / 2; P(t_2 <= it) = 1/2 + sqrt(3/7) / 2."""
    result = dm_hln_test(np.array([1.0, 2.0, 6.0]), np.zeros(3), horizon=2)
    assert result.statistic == pytest.approx(math.sqrt(6) / 2)
    assert result.p_value == pytest.approx(0.5 + math.sqrt(3 / 7) / 2)


@pytest.mark.parametrize(("n", "horizon"), [(0, 1), (2, 2)])
def test_dm_refuses_days_that_leave_the_hln_factor_no_room(n, horizon):
    """No day at all; and 2 days at h = 2, where n + 1 - 2h + h(h-1)/n = 2 + 1 - 4 + 1 = 0 exactly."""
    with pytest.raises(ValueError, match=f"^{n} loss differentials are too few for a horizon of {horizon}$"):
        dm_hln_test(np.arange(1.0, n + 1), np.zeros(n), horizon=horizon)


# Losses around a million whose differential moves by 2^-21 either way: variance 2^-42 (about 2.3e-13),
# under (1e-12 * 1e6)^2 = 1e-12, a spread of rounding size against such losses: no test. 1e6 + 2^-20
# is exact in a double (its unit in the last place is 2^-33), and so is every sum and difference here.
BIG = np.tile([1e6, 1e6 + 2**-20], 2)


@pytest.mark.parametrize(
    ("loss_a", "loss_b", "mean"), [(BIG, np.zeros(4), 1e6 + 2**-21), (np.zeros(4), BIG, -1e6 - 2**-21)]
)
def test_a_spread_of_rounding_size_against_the_losses_of_either_side_is_no_evidence(loss_a, loss_b, mean):
    result = dm_hln_test(loss_a, loss_b)
    assert (result.statistic, result.p_value, result.n, result.mean_difference) == (0.0, 1.0, 4, mean)


def test_the_same_spread_against_losses_near_one_is_tested():
    """d = [1, 1 + 2^-20] x 2: variance 2^-42 is above (1e-12 * (1 + 2^-21))^2, about 1e-24: DM = (1 + 2^-21)
    / sqrt(2^-42 / 4) = 2^22 + 2, HLN's factor sqrt(3 / 4)."""
    result = dm_hln_test(np.tile([1.0, 1.0 + 2**-20], 2), np.zeros(4))
    assert result.statistic == pytest.approx((2**22 + 2) * math.sqrt(3) / 2)


def test_losses_of_zero_are_no_evidence_and_warn_of_nothing():
    """Both losses 0 every day: scale and variance 0, and a threshold of 0 is no spread: statistic 0, p 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = dm_hln_test(np.zeros(4), np.zeros(4))
    assert (result.statistic, result.p_value, result.n, result.mean_difference) == (0.0, 1.0, 4, 0.0)


def test_christoffersen_refuses_with_exactly_its_message():
    with pytest.raises(
        ValueError, match=r"^the miss sequence must hold at least 2 days of 0 \(hit\) or 1 \(miss\)$"
    ):
        christoffersen(np.array([0, 2]), 80)


# Promotion

CHAMPION = DailyLosses(np.ones(20), np.ones(20))
# Squared errors [1.0625, 0.0625] x 10 against the champion's 1: RMSE 0.75, 25% lower; d = [0.0625,
# -0.9375] x 10, mean -0.4375, spread 0.5: statistic -0.4375 / (0.5 / sqrt(20)) * sqrt(19 / 20) = -3.81...
# far below t_19's 5% quantile (-1.73); its interval scores equal the champion's: not worse (p = 1).
CHALLENGER = DailyLosses(np.tile([1.0625, 0.0625], 10), np.ones(20))
RULES = PromotionRules(alpha=0.05, min_improvement=0.1)


def test_an_unscored_champion_keeps_the_evidence_against_the_naive_forecast():
    """The challenger is the naive forecast's equal (identical losses: p = 1): no skill."""
    naive = DailyLosses(CHALLENGER.squared_error.copy())
    kept = decide_promotion(CHALLENGER, "2", None, RULES, naive=naive)
    assert (kept.decision, kept.against_champion) == (KEPT, None)
    assert isinstance(kept.against_naive, Comparison)
    assert (kept.against_naive.rmse, kept.against_naive.accuracy.p_value) == (0.75, 1.0)
    assert kept.no_skill is True


def test_a_promoted_version_is_called_better_and_keeps_its_want_of_skill():
    naive = DailyLosses(CHALLENGER.squared_error.copy())
    promotion = decide_promotion(CHALLENGER, "3", CHAMPION, RULES, naive=naive)
    assert promotion.decision == PROMOTED
    assert promotion.reason.startswith("better than the champion: RMSE 0.75 against champion version 3's 1 (")
    assert promotion.no_skill is True


# Degradation


def test_a_forecast_without_intervals_has_float_nan_hits():
    rows = pd.DataFrame(
        {DATE_COLUMN: ["2020-01-03"], FORECAST_COLUMN: [10.5], LAST_CLOSE_COLUMN: [10.0], RUN_COLUMN: ["a"]}
    )
    prices = pd.DataFrame({DATE_COLUMN: pd.to_datetime(["2020-01-03"]), PRICE_COLUMN: [11.0]})
    scored = scored_days(rows, prices)
    for level in (80, 95):
        assert scored[f"inside_{level}"].dtype == np.float64
        assert np.isnan(scored[f"inside_{level}"].to_numpy()).all()


def test_the_first_days_keep_their_columns_under_a_fresh_index():
    frame = pd.DataFrame(
        {
            DATE_COLUMN: pd.to_datetime(["2020-01-06", "2020-01-03", "2020-01-03"]),
            DAYS_AHEAD_COLUMN: [1, 2, 1],
        },
        index=[7, 8, 9],
    )
    days = one_step_days(frame)
    assert list(days.columns) == [DATE_COLUMN, DAYS_AHEAD_COLUMN]
    assert days.index.tolist() == [0, 1]
    assert days[DATE_COLUMN].dt.strftime("%Y-%m-%d").tolist() == ["2020-01-03", "2020-01-06"]


def test_a_version_that_is_no_number_comes_after_every_numbered_one():
    scored = pd.DataFrame(
        {
            MODEL_VERSION_COLUMN: ["x", "1", "2"],
            RUN_COLUMN: ["a", "b", "c"],
            "error": [1.0, 1.0, 1.0],
            "naive_error": [1.0, 1.0, 1.0],
            "inside_80": [1.0, 1.0, 1.0],
            "inside_95": [1.0, 1.0, 1.0],
        }
    )
    assert by_version(scored)[MODEL_VERSION_COLUMN].tolist() == ["2", "1", "x"]


def champion_days(errors, naive_errors, inside_80, inside_95):
    n = len(errors)
    return pd.DataFrame(
        {
            DATE_COLUMN: pd.date_range("2020-01-01", periods=n),
            DAYS_AHEAD_COLUMN: 1,
            "error": errors,
            "naive_error": naive_errors,
            "inside_80": inside_80,
            "inside_95": inside_95,
        }
    )


def test_a_judgement_of_25_days_logs_every_test_it_ran_and_the_realized_rmse():
    """25 days, errors 3 and 0 in turn (13 threes) against the naive forecast's 1: squared errors 9 and 0,
    d = 8 (13 days) and -1 (12 days), mean (104 - 12) / 25 = 3.68, variance (13/25)(12/25) 9^2 = 20.2176;
    statistic 3.68 / sqrt(20.2176 / 25) * sqrt(24 / 25) = 4.0095..., p = P(t_24 >= it) < 0.05. Realized
    RMSE sqrt(13 * 9 / 25) = sqrt(4.68) = 2.163, the naive's 1.

    The 80% interval misses days 2, 7, 12, 17 and 22: 5 of 25, exactly 20%, so Kupiec's statistic is 0 and
    its p-value 1. Transitions: 0->0 14, 0->1 5, 1->0 5, 1->1 0; pi01 = 5/19, pi11 = 0, pi = 5/24:
    LR_ind = -2 (19 ln(19/24) + 5 ln(5/24) - 14 ln(14/19) - 5 ln(5/19)) = 2.66...; p = exp(-LR / 2)."""
    inside_80 = [0.0 if day % 5 == 2 else 1.0 for day in range(25)]
    days = champion_days([3.0, 0.0] * 12 + [3.0], [1.0] * 25, inside_80, np.nan)
    judgement = judge(days, 0.05)
    statistic = 3.68 / math.sqrt(20.2176 / 25) * math.sqrt(24 / 25)
    independence = -2 * (
        19 * math.log(19 / 24) + 5 * math.log(5 / 24) - 14 * math.log(14 / 19) - 5 * math.log(5 / 19)
    )
    assert judgement.metrics == pytest.approx(
        {
            METRIC_TESTED_DAYS: 25.0,
            "realized_dm_statistic": statistic,
            "realized_dm_p_value": stats.t(24).sf(statistic),
            "kupiec_80_statistic": 0.0,
            "kupiec_80_p_value": 1.0,
            "christoffersen_80_statistic": independence,
            "christoffersen_80_p_value": math.exp(-independence / 2),
        }
    )
    assert judgement.degradation.startswith(
        "Diebold-Mariano test: realized RMSE 2.163 against the naive forecast's 1 over 25 days, p="
    )
    assert judgement.too_few_days is None


def test_a_missing_80_percent_interval_still_leaves_the_95_percent_one_to_wait_for():
    """16 days of identical errors (DM: no evidence) with only a 95% interval: the 80% one is skipped, the
    95% one needs 100 days."""
    days = champion_days([1.0] * 16, [1.0] * 16, np.nan, [1.0] * 16)
    judgement = judge(days, 0.05)
    assert judgement.too_few_days == "16 one-day-ahead days scored: Kupiec and Christoffersen at 95% need 100"
    assert judgement.degradation is None
