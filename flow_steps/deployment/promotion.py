"""Promotion, pure: when a new version replaces the champion (on the same test days, significantly and
practically better, its intervals not significantly worse), and the version's description in one line.
The registry's part is deployment/registration.py's; the statistics are deployment/evidence.py's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flow_steps.config.declarations import MIN_IMPROVEMENT, PROMOTION_ALPHA
from flow_steps.config.errors import PipelineError
from flow_steps.config.names import (
    FIRST_VERSION,
    KEPT,
    METRIC_INTERVAL_P_VALUE,
    METRIC_INTERVAL_STATISTIC,
    METRIC_PROMOTION_IMPROVEMENT,
    METRIC_PROMOTION_MEAN_LOSS_DIFFERENCE,
    METRIC_PROMOTION_P_VALUE,
    METRIC_PROMOTION_STATISTIC,
    METRIC_SKILL_IMPROVEMENT,
    METRIC_SKILL_P_VALUE,
    METRIC_SKILL_STATISTIC,
    METRIC_TEST_COVERAGE_80,
    METRIC_TEST_COVERAGE_95,
    PROMOTED,
)
from flow_steps.deployment.evidence import MIN_DM_DAYS, TestResult, dm_hln_test
from flow_steps.deployment.scoring import DailyLosses, HoldoutDays, day_text
from flow_steps.deployment.versions import RUNS_URI


@dataclass(frozen=True)
class PromotionRules:
    """When a challenger is better enough: its DM p-value at most `alpha`, its RMSE lower by at least
    `min_improvement` (a share), and its 80% interval score not significantly worse at `alpha`."""

    alpha: float = PROMOTION_ALPHA.default
    min_improvement: float = MIN_IMPROVEMENT.default


@dataclass(frozen=True)
class Comparison:
    """One model against another on the same days: their RMSEs, Diebold-Mariano (HLN) on the squared
    errors (H1: the first's are lower) and on the 80% interval scores (H1: the first's are higher; None
    when either has no interval)."""

    rmse: float
    other_rmse: float
    accuracy: TestResult
    intervals: TestResult | None = None

    @property
    def improvement(self) -> float:
        """1 - RMSE / the other's RMSE: the share by which the RMSE is lower."""
        return 1 - self.rmse / self.other_rmse if self.other_rmse > 0 else 0.0

    def better(self, rules: PromotionRules) -> bool:
        """Significantly and practically better, and its intervals not significantly worse."""
        worse_intervals = self.intervals is not None and self.intervals.rejects(rules.alpha)
        return (
            self.accuracy.rejects(rules.alpha)
            and self.improvement >= rules.min_improvement
            and not worse_intervals
        )

    def words(self, rules: PromotionRules, other: str) -> str:
        """The comparison in words: the RMSEs, the tests and what they mean."""
        lower = (
            f"{self.improvement:.2%} lower" if self.improvement >= 0 else f"{-self.improvement:.2%} higher"
        )
        enough = "at least" if self.improvement >= rules.min_improvement else "under"
        text = (
            f"RMSE {self.rmse:.6g} against {other}'s {self.other_rmse:.6g} ({lower}, {enough} "
            f"min_improvement {rules.min_improvement:.2%}); "
        )
        if self.accuracy.n < MIN_DM_DAYS:
            text += f"{self.accuracy.n} days, too few for the Diebold-Mariano test (needs {MIN_DM_DAYS})"
        elif self.accuracy.rejects(rules.alpha):
            text += f"Diebold-Mariano p={self.accuracy.p_value:.3g} <= promotion_alpha {rules.alpha:g}"
        else:
            text += (
                f"Diebold-Mariano p={self.accuracy.p_value:.3g} > promotion_alpha {rules.alpha:g}: not "
                "significant, these test days cannot tell it apart from luck"
            )
        if self.intervals is not None:
            worse = (
                "significantly worse" if self.intervals.rejects(rules.alpha) else "not significantly worse"
            )
            text += f"; 80% interval score {worse} (p={self.intervals.p_value:.3g})"
        return text


def compare(challenger: DailyLosses, other: DailyLosses) -> Comparison:
    """`challenger` against `other` on the same days (one-day-ahead forecasts: horizon 1). With fewer than
    MIN_DM_DAYS days there is no test: p-value 1, statistic NaN."""
    days = len(challenger.squared_error)
    if days < MIN_DM_DAYS:
        difference = float(np.mean(challenger.squared_error - other.squared_error)) if days else float("nan")
        untested = TestResult(float("nan"), 1.0, days, difference)
        return Comparison(challenger.rmse, other.rmse, untested)
    accuracy = dm_hln_test(challenger.squared_error, other.squared_error, alternative="less")
    intervals = None
    if challenger.interval_score is not None and other.interval_score is not None:
        intervals = dm_hln_test(challenger.interval_score, other.interval_score, alternative="greater")
    return Comparison(challenger.rmse, other.rmse, accuracy, intervals)


@dataclass(frozen=True)
class Promotion:
    """Whether the new version becomes champion, and why, in one line; the evidence against the champion
    (None without one) and against the naive forecast (None when not compared)."""

    decision: str
    reason: str
    against_champion: Comparison | None = None
    against_naive: Comparison | None = None
    no_skill: bool = False  # compared with the naive forecast and not better by the same rule

    @property
    def promotes(self) -> bool:
        return self.decision in (FIRST_VERSION, PROMOTED)


def decide_promotion(
    challenger: DailyLosses,
    champion_version: str | None,
    champion: DailyLosses | None,
    rules: PromotionRules = PromotionRules(),
    naive: DailyLosses | None = None,
) -> Promotion:
    """The new version replaces the champion only when, on the same test days, it is significantly
    (Diebold-Mariano with HLN's correction, one-sided, p <= `rules.alpha`) and practically (RMSE lower by
    at least `rules.min_improvement`) better, and its 80% interval score is not significantly worse. The
    first version becomes champion whatever its evidence against `naive` (compared when given)."""
    against_naive = compare(challenger, naive) if naive is not None else None
    no_skill = against_naive is not None and not against_naive.better(rules)
    if champion_version is None:
        reason = "no champion yet: the first version becomes champion"
        if no_skill:
            reason += ", with no evidence of skill over the naive forecast"
        return Promotion(FIRST_VERSION, reason, None, against_naive, no_skill)
    if champion is None:
        reason = f"champion version {champion_version} cannot be scored on these test days"
        return Promotion(KEPT, reason, None, against_naive, no_skill)
    comparison = compare(challenger, champion)
    words = comparison.words(rules, f"champion version {champion_version}")
    decision, verdict = (PROMOTED, "better") if comparison.better(rules) else (KEPT, "not better enough")
    return Promotion(decision, f"{verdict} than the champion: {words}", comparison, against_naive, no_skill)


def evidence_metrics(promotion: Promotion) -> dict[str, float]:
    """What the register run logs of the evidence: against the champion and against the naive forecast."""
    metrics = {}
    champion, naive = promotion.against_champion, promotion.against_naive
    if champion is not None:
        metrics[METRIC_PROMOTION_STATISTIC] = champion.accuracy.statistic
        metrics[METRIC_PROMOTION_P_VALUE] = champion.accuracy.p_value
        metrics[METRIC_PROMOTION_MEAN_LOSS_DIFFERENCE] = champion.accuracy.mean_difference
        metrics[METRIC_PROMOTION_IMPROVEMENT] = champion.improvement
        if champion.intervals is not None:
            metrics[METRIC_INTERVAL_STATISTIC] = champion.intervals.statistic
            metrics[METRIC_INTERVAL_P_VALUE] = champion.intervals.p_value
    if naive is not None:
        metrics[METRIC_SKILL_STATISTIC] = naive.accuracy.statistic
        metrics[METRIC_SKILL_P_VALUE] = naive.accuracy.p_value
        metrics[METRIC_SKILL_IMPROVEMENT] = naive.improvement
    return metrics


def train_run_id(model_uri: str) -> str:
    """The run id in a `runs:/<run id>/<path>` URI."""
    match = RUNS_URI.match(model_uri)
    if not match:
        raise PipelineError(
            f"model_uri '{model_uri}' is not a runs:/<run id>/<path> URI of a train_model run"
        )
    return match["run_id"]


def version_description(
    challenger_rmse: float,
    naive_rmse: float,
    days: HoldoutDays,
    promotion: Promotion,
    training_metrics: dict[str, float] | None = None,
) -> str:
    """One line for the registry page: the score against naive (and the test of skill over it, when
    made), the intervals' coverage (from the training run's test days), the data, the decision and why."""
    ratio = challenger_rmse / naive_rmse
    naive = promotion.against_naive
    skill = f" (skill test p={naive.accuracy.p_value:.3g})" if naive is not None else ""
    metrics = training_metrics or {}
    coverage = ""
    if METRIC_TEST_COVERAGE_80 in metrics and METRIC_TEST_COVERAGE_95 in metrics:
        coverage = (
            f"; 80%/95% intervals covered {metrics[METRIC_TEST_COVERAGE_80]:.1%}"
            f"/{metrics[METRIC_TEST_COVERAGE_95]:.1%}"
        )
    return (
        f"Test RMSE {challenger_rmse:.4g} = {ratio:.3f} x naive{skill} over {days.n_test} days "
        f"{day_text(days.dates.iloc[-days.n_test])}..{day_text(days.dates.iloc[-1])}{coverage}; "
        f"trained through {day_text(days.dates.iloc[-days.n_test - 1])}; {promotion.decision}: "
        f"{promotion.reason}"
    )
