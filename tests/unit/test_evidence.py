"""deployment/evidence.py: the Diebold-Mariano (HLN), Kupiec and Christoffersen statistics equal values
worked by hand from their definitions (in the comments; scipy only turns a hand statistic into a p-value),
and the limit cases: zero variance, all hits, all misses, too few days."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from flow_steps.deployment.evidence import (
    MIN_DM_DAYS,
    TestResult,
    christoffersen,
    dm_hln_test,
    kupiec_pof,
    min_coverage_days,
)


def test_dm_hln_on_four_days_by_hand():
    # d = a - b = [-1, -2, 0, -4]; mean -7/4 = -1.75; deviations 0.75, -0.25, 1.75, -2.25;
    # gamma_0 = (0.5625 + 0.0625 + 3.0625 + 5.0625) / 4 = 2.1875; DM = -1.75 / sqrt(2.1875 / 4);
    # HLN (h = 1): DM * sqrt(3 / 4) = -1.75 * sqrt(0.75 / 0.546875) = -1.75 * sqrt(48 / 35) = -sqrt(4.2).
    result = dm_hln_test(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 3.0, 8.0]), alternative="less")
    assert result.statistic == pytest.approx(-2.04939015319192, rel=1e-12)
    assert result.mean_difference == -1.75 and result.n == 4
    # One-sided, a better: P(t_3 <= -sqrt(4.2)) = 0.0664209...
    assert result.p_value == pytest.approx(0.06642092027988782, rel=1e-9)
    assert result.p_value == pytest.approx(stats.t(3).cdf(-math.sqrt(4.2)), rel=1e-12)
    greater = dm_hln_test(
        np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 3.0, 8.0]), alternative="greater"
    )
    assert greater.p_value == pytest.approx(1 - 0.06642092027988782, rel=1e-9)
    two_sided = dm_hln_test(
        np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 3.0, 8.0]), alternative="two-sided"
    )
    assert two_sided.p_value == pytest.approx(2 * 0.06642092027988782, rel=1e-9)


def test_dm_hln_with_a_two_day_horizon_adds_the_first_autocovariance():
    # d = [1, 2, 3, 6]; mean 3; deviations -2, -1, 0, 3; gamma_0 = 14 / 4 = 3.5;
    # gamma_1 = ((-1)(-2) + 0(-1) + 3 * 0) / 4 = 0.5; long-run variance 3.5 + 2 * 0.5 = 4.5;
    # DM = 3 / sqrt(4.5 / 4) = sqrt(8); HLN factor sqrt((4 + 1 - 4 + 2 / 4) / 4) = sqrt(0.375);
    # statistic sqrt(8 * 0.375) = sqrt(3).
    result = dm_hln_test(np.array([1.0, 2.0, 3.0, 6.0]), np.zeros(4), horizon=2, alternative="greater")
    assert result.statistic == pytest.approx(1.7320508075688772, rel=1e-12)
    assert result.p_value == pytest.approx(0.09084505690810468, rel=1e-9)  # P(t_3 >= sqrt(3))


def test_identical_forecasts_are_no_evidence():
    same = np.array([0.5, 1.0, 2.0, 0.25])
    result = dm_hln_test(same, same.copy())
    assert (result.statistic, result.p_value, result.mean_difference) == (0.0, 1.0, 0.0)
    assert not result.rejects(0.5)


def test_a_differential_that_never_varies_is_no_evidence_either_way():
    # Better by exactly 1 every day: no spread, no test (the statistic would be infinite).
    result = dm_hln_test(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0]))
    assert (result.statistic, result.p_value) == (0.0, 1.0)


def test_dm_refuses_what_it_cannot_test():
    with pytest.raises(ValueError, match="1 loss differentials are too few"):
        dm_hln_test(np.array([1.0]), np.array([2.0]))
    with pytest.raises(ValueError, match="horizon must be at least 1"):
        dm_hln_test(np.ones(5), np.zeros(5), horizon=0)
    with pytest.raises(ValueError, match="alternative must be"):
        dm_hln_test(np.array([1.0, 2.0]), np.array([2.0, 2.5]), alternative="lower")


def test_kupiec_by_hand():
    # 9 misses of 20 at 80% (expected rate 0.2, observed 0.45):
    # LR = -2 (11 ln 0.8 + 9 ln 0.2) + 2 (11 ln 0.55 + 9 ln 0.45) = 6.35348800...
    result = kupiec_pof(9, 20, 80)
    assert result.statistic == pytest.approx(6.3534880041828785, rel=1e-12)
    assert result.p_value == pytest.approx(stats.chi2(1).sf(6.3534880041828785), rel=1e-12)
    assert result.p_value == pytest.approx(0.011715, abs=1e-6)
    # Exactly the expected rate: 4 of 20, LR 0, p 1.
    assert kupiec_pof(4, 20, 80).statistic == pytest.approx(0.0, abs=1e-12)
    assert kupiec_pof(4, 20, 80).p_value == pytest.approx(1.0)


def test_kupiec_with_no_miss_and_with_only_misses():
    # 0 of 25 at 80%: LR = -2 (25 ln 0.8) + 2 (25 ln 1 + 0 ln 0) = -50 ln 0.8 = 11.1571776 (0 log 0 = 0).
    assert kupiec_pof(0, 25, 80).statistic == pytest.approx(11.157177565710485, rel=1e-12)
    # 25 of 25: LR = -2 (25 ln 0.2) + 2 (0 ln 0 + 25 ln 1) = -50 ln 0.2 = 80.4718956.
    assert kupiec_pof(25, 25, 80).statistic == pytest.approx(80.47189562170502, rel=1e-12)
    with pytest.raises(ValueError, match="misses must be between 0 and n"):
        kupiec_pof(26, 25, 80)


def test_christoffersen_by_hand():
    # Misses 0 0 1 1 0 1 0 0 0 1 at 80%: 4 of 10. Transitions n00 = 3, n01 = 3, n10 = 2, n11 = 1;
    # pi01 = 3/6, pi11 = 1/3, pi = 4/9.
    # LR_ind = -2 (5 ln(5/9) + 4 ln(4/9)) + 2 (3 ln 0.5 + 3 ln 0.5 + 2 ln(2/3) + ln(1/3)) = 0.2284572...
    # LR_pof = -2 (6 ln 0.8 + 4 ln 0.2) + 2 (6 ln 0.6 + 4 ln 0.4) = 2.0929926...; LR_cc = 2.3214498.
    result = christoffersen(np.array([0, 0, 1, 1, 0, 1, 0, 0, 0, 1]), 80)
    assert result.statistic == pytest.approx(2.3214497773217886, rel=1e-12)
    assert result.p_value == pytest.approx(stats.chi2(2).sf(2.3214497773217886), rel=1e-12)
    assert result.p_value == pytest.approx(0.313259, abs=1e-6)


def test_christoffersen_with_all_hits_and_all_misses_is_kupiec_alone():
    # All hits: n00 = 24, the other counts 0 (pi11 = 0/0 taken as 0; 0 log 0 = 0): LR_ind = 0, so
    # LR_cc = LR_pof = -50 ln 0.8. All misses: n11 = 24, pi11 = pi = 1: LR_ind = 0, LR_cc = -50 ln 0.2.
    assert christoffersen(np.zeros(25), 80).statistic == pytest.approx(11.157177565710485, rel=1e-12)
    assert christoffersen(np.ones(25), 80).statistic == pytest.approx(80.47189562170502, rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 days of 0"):
        christoffersen(np.array([0, 2]), 80)


def test_clustered_misses_fail_christoffersen_at_the_expected_rate():
    # 5 misses of 25 at 80% (exactly the expected rate: LR_pof = 0), all in a row: n00 = 19, n01 = 1,
    # n10 = 0, n11 = 4 (the sequence ends on a miss); pi01 = 1/20, pi11 = 1, pi = 5/24.
    # LR_ind = -2 (19 ln(19/24) + 5 ln(5/24)) + 2 (19 ln(19/20) + ln(1/20)) = 16.6229138...
    misses = np.array([0] * 20 + [1] * 5)
    expected = -2 * (19 * math.log(19 / 24) + 5 * math.log(5 / 24)) + 2 * (
        19 * math.log(0.95) + math.log(0.05)
    )
    assert christoffersen(misses, 80).statistic == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(16.6229138, abs=1e-7)
    assert christoffersen(misses, 80).p_value < 0.001  # chi2(2) beyond 16.6: p = exp(-16.6 / 2)
    assert kupiec_pof(5, 25, 80).p_value == pytest.approx(1.0)  # the count alone is perfect


@pytest.mark.parametrize(("level", "days"), [(80, 25), (95, 100)])
def test_coverage_tests_need_five_expected_misses(level, days):
    # 5 / 0.2 = 25 and 5 / 0.05 = 100 days.
    assert min_coverage_days(level) == days
    assert MIN_DM_DAYS == 16


@pytest.mark.parametrize(("p_value", "alpha", "rejects"), [(0.05, 0.05, True), (0.0501, 0.05, False)])
def test_a_test_rejects_when_its_p_value_is_at_most_alpha(p_value, alpha, rejects):
    assert TestResult(1.0, p_value, 20).rejects(alpha) == rejects
    assert TestResult(1.0, np.nextafter(alpha, 0), 20).rejects(alpha)
