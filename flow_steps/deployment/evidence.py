"""The statistics behind promotion and monitoring, pure: is one forecast's loss lower than another's
beyond luck (Diebold-Mariano), and do an interval's misses come as often, and as scattered, as its
level says (Kupiec, Christoffersen)?

- `dm_hln_test`: Diebold and Mariano (1995) on the loss differential d_t = loss_a_t - loss_b_t, with the
  small-sample correction of Harvey, Leybourne and Newbold (1997): DM * sqrt((n + 1 - 2h + h(h-1)/n) / n)
  against Student's t with n - 1 degrees of freedom. The long-run variance of d is the truncated sum
  gamma_0 + 2 * sum_{k=1}^{h-1} gamma_k (autocovariances with divisor n); for one-day-ahead forecasts
  (h = 1, every use in this project) that is gamma_0 alone: one-step errors of an optimal forecast are
  serially uncorrelated.
- `kupiec_pof`: Kupiec's (1995) proportion-of-failures likelihood ratio, chi-squared with 1 degree of
  freedom.
- `christoffersen`: Christoffersen's (1998) conditional coverage, LR_cc = LR_pof + LR_ind, chi-squared
  with 2 degrees of freedom, LR_ind testing that a miss is no likelier after a miss than after a hit
  (a first-order Markov chain of misses against independent ones).

In every likelihood, 0 * log 0 = 0 (a transition or an outcome never seen contributes nothing). A test
rejects at level alpha when its p-value is at most alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Alternative = Literal["less", "greater", "two-sided"]

# The fewest days each test is run on; with fewer it says how many it needs and concludes nothing.
# Diebold-Mariano: 16 is the smallest sample of Harvey, Leybourne and Newbold's (1997) simulations, from
# which their corrected statistic against t(n-1) holds its size.
MIN_DM_DAYS = 16
# Kupiec and Christoffersen: their chi-squared laws are asymptotic; the usual rule for a count's chi-squared
# approximation asks for at least 5 expected outcomes in each cell, here 5 expected misses.
MIN_EXPECTED_MISSES = 5


def min_coverage_days(level: int) -> int:
    """The fewest days a coverage test of a `level`% interval needs: 5 expected misses (25 at 80%,
    100 at 95%)."""
    return -(-MIN_EXPECTED_MISSES * 100 // (100 - level))  # ceil, in integers


@dataclass(frozen=True)
class TestResult:
    """A test's statistic and p-value; `mean_difference` is the mean loss differential (DM only)."""

    __test__ = False  # not a pytest test class

    statistic: float
    p_value: float
    n: int
    mean_difference: float = float("nan")

    def rejects(self, alpha: float) -> bool:
        """True when the p-value is at most `alpha`."""
        return self.p_value <= alpha


def dm_hln_test(
    loss_a: np.ndarray, loss_b: np.ndarray, horizon: int = 1, alternative: Alternative = "less"
) -> TestResult:
    """Diebold-Mariano with the HLN correction on d = loss_a - loss_b, day by day.

    `alternative` "less": a's loss is lower (a is the better forecast); "greater": a's is higher.
    A differential that never varies (identical forecasts, say) is no evidence: statistic 0, p-value 1.
    """
    d = np.asarray(loss_a, dtype=float) - np.asarray(loss_b, dtype=float)
    n = len(d)
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    if n < 2 or n + 1 - 2 * horizon + horizon * (horizon - 1) / n <= 0:
        raise ValueError(f"{n} loss differentials are too few for a horizon of {horizon}")
    mean = float(np.mean(d))
    centred = d - mean
    variance = float(np.dot(centred, centred)) / n
    for lag in range(1, horizon):
        variance += 2 * float(np.dot(centred[lag:], centred[:-lag])) / n
    scale = max(float(np.mean(np.abs(loss_a))), float(np.mean(np.abs(loss_b))), np.finfo(float).tiny)
    if not variance > (1e-12 * scale) ** 2:  # no spread (or a negative truncated sum): no test
        return TestResult(0.0, 1.0, n, mean)
    dm = mean / math.sqrt(variance / n)
    statistic = dm * math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    t = stats.t(df=n - 1)
    if alternative == "less":
        p_value = float(t.cdf(statistic))
    elif alternative == "greater":
        p_value = float(t.sf(statistic))
    elif alternative == "two-sided":
        p_value = float(2 * t.sf(abs(statistic)))
    else:
        raise ValueError(f"alternative must be less, greater or two-sided, got {alternative!r}")
    return TestResult(statistic, p_value, n, mean)


def _log_likelihood(count_a: int, count_b: int, probability_b: float) -> float:
    """log((1 - p)^a * p^b) with 0 * log 0 = 0."""
    total = 0.0
    if count_a:
        total += count_a * math.log(1 - probability_b)
    if count_b:
        total += count_b * math.log(probability_b)
    return total


def _pof_statistic(misses: int, n: int, level: int) -> float:
    expected_rate = (100 - level) / 100
    observed_rate = misses / n
    null = _log_likelihood(n - misses, misses, expected_rate)
    fitted = _log_likelihood(n - misses, misses, observed_rate)
    return max(0.0, -2 * (null - fitted))


def kupiec_pof(misses: int, n: int, level: int) -> TestResult:
    """Kupiec's proportion of failures: did a `level`% interval (80, 95) miss `misses` of `n` days as
    often as 100 - level % of them? Two-sided, chi-squared with 1 degree of freedom."""
    if not 0 <= misses <= n or n < 1:
        raise ValueError(f"misses must be between 0 and n, got {misses} of {n}")
    statistic = _pof_statistic(misses, n, level)
    return TestResult(statistic, float(stats.chi2(1).sf(statistic)), n)


def christoffersen(miss_sequence: np.ndarray, level: int) -> TestResult:
    """Christoffersen's conditional coverage of a `level`% interval from its day-by-day misses (1 = the
    close fell outside): LR_pof + LR_ind, chi-squared with 2 degrees of freedom."""
    misses = np.asarray(miss_sequence, dtype=int)
    if len(misses) < 2 or not np.isin(misses, (0, 1)).all():
        raise ValueError("the miss sequence must hold at least 2 days of 0 (hit) or 1 (miss)")
    before, after = misses[:-1], misses[1:]
    n00, n01 = int(np.sum((before == 0) & (after == 0))), int(np.sum((before == 0) & (after == 1)))
    n10, n11 = int(np.sum((before == 1) & (after == 0))), int(np.sum((before == 1) & (after == 1)))
    pi01 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi11 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    independent = _log_likelihood(n00 + n10, n01 + n11, pi)
    markov = _log_likelihood(n00, n01, pi01) + _log_likelihood(n10, n11, pi11)
    independence = max(0.0, -2 * (independent - markov))
    statistic = _pof_statistic(int(misses.sum()), len(misses), level) + independence
    return TestResult(statistic, float(stats.chi2(2).sf(statistic)), len(misses))
