"""Adaptive conformal inference (ACI, Gibbs & Candes 2021) on top of the volatility-scaled intervals.

The static interval of day t uses one multiplier per level, the conformal quantile of the calibration
scores `|log(actual / forecast)| / sigma` (flow_steps/model/intervals.py). ACI keeps, per level, a
working miss rate alpha_t instead of the nominal alpha = 1 - level / 100, and after each realized close
moves it by

    alpha_{t+1} = alpha_t + gamma * (alpha - err_t),   err_t = 1 if day t's close fell outside, else 0,

so a run of misses lowers alpha_t (wider intervals) and a run of hits raises it. Day t's multiplier is
the (1 - alpha_t) conformal quantile of the same calibration scores: the ceil((n + 1)(1 - alpha_t))-th
smallest of n, the rank `calibrate` uses, so alpha_1 = alpha gives exactly the static multiplier.

Limits, chosen and kept finite so that every interval can be served and scored:
- alpha_t < 1 / (n + 1), where split conformal's quantile is infinite (the paper's interval is the
  whole line for alpha_t <= 0): the largest calibration score, as `calibrate` caps it;
- alpha_t >= 1 (the paper's empty interval): multiplier 0, the forecast alone (a certain miss);
- alpha_t itself is clipped to [-gamma, 1 + gamma], the range the paper's alpha_t never leaves (its
  Lemma 4.1). With infinite intervals no miss can happen below 0; with the largest score a close beyond
  every calibration score still misses, and without the clip each such miss would push alpha_t further
  down and keep the intervals at their widest long after the storm.

Day t's interval uses err_1 .. err_{t-1} only: changing day t's close cannot change it.
Pure numpy: the served model imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flow_steps.config.names import ADAPTIVE_INTERVALS, STATIC_INTERVALS
from flow_steps.model.intervals import (
    INTERVAL_COLUMNS,
    LEVELS,
    Interval,
    interval_columns,
    multipliers_from_scores,
    scaled_intervals,
    scaled_scores,
)

# Gibbs & Candes (2021), "Adaptive Conformal Inference Under Distribution Shift", NeurIPS: the step
# they use throughout their stock-volatility experiments, small enough that alpha_t moves slowly.
GAMMA = 0.005
# The intervals the served model answers with in `lower_<level>` / `upper_<level>` and train_model logs
# as `test_coverage_<level>`. Adaptive: nowhere worse than static, "worse" meaning significantly (one-sided,
# 5%) and practically (by 0.5% or more, promotion's min_improvement) worse in interval score; within 2
# points of nominal coverage through 2008-2009 where static is not (docs/evaluation.md, 2026-12-06).
DEFAULT_INTERVALS = ADAPTIVE_INTERVALS
OTHER_INTERVALS = STATIC_INTERVALS if DEFAULT_INTERVALS == ADAPTIVE_INTERVALS else ADAPTIVE_INTERVALS


def answer_columns(method: str, level: int) -> tuple[str, str]:
    """The served answer's lower and upper columns of one way at `level`: `lower_80` for the default
    way, `adaptive_lower_80` (or `static_lower_80`) for the other."""
    return interval_columns(level, "" if method == DEFAULT_INTERVALS else method)


# Every interval column of the served model's answer: the default way's, then the other way's.
ANSWER_INTERVAL_COLUMNS = INTERVAL_COLUMNS + tuple(
    column for level in LEVELS for column in answer_columns(OTHER_INTERVALS, level)
)
_RANK_TOLERANCE = 1e-9  # (n + 1)(1 - alpha_t) a hair above an integer is that integer, not the next one


def miss_rate(level: int) -> float:
    """The nominal alpha of a level in percent: 0.2 for 80."""
    return 1 - level / 100


def clipped_alpha(alpha_t: float, gamma: float = GAMMA) -> float:
    """alpha_t kept within [-gamma, 1 + gamma]."""
    return float(min(max(alpha_t, -gamma), 1 + gamma))


def conformal_multiplier(sorted_scores: np.ndarray, alpha_t: float) -> float:
    """The (1 - alpha_t) conformal quantile of ascending calibration scores (see the module's limits)."""
    if alpha_t >= 1:
        return 0.0
    n = len(sorted_scores)
    rank = int(np.ceil((n + 1) * (1 - alpha_t) - _RANK_TOLERANCE))
    return float(sorted_scores[min(max(rank, 1), n) - 1])


def next_alpha(alpha_t: float, target: float, missed: bool, gamma: float = GAMMA) -> float:
    """One ACI step: alpha_t + gamma * (target - err_t), clipped."""
    return clipped_alpha(alpha_t + gamma * (target - float(missed)), gamma)


@dataclass(frozen=True)
class AdaptiveRun:
    """One level's walk through the days: alpha_t and the multiplier used on each day, and the next."""

    alphas: np.ndarray  # alpha_t of each day walked through
    multipliers: np.ndarray  # the multiplier of each day, from alpha_t
    misses: np.ndarray  # err_t of each day
    next_alpha: float  # alpha for the day after the last
    next_multiplier: float


def adaptive_run(
    sorted_scores: np.ndarray, realized_scores: np.ndarray, level: int, gamma: float = GAMMA
) -> AdaptiveRun:
    """Walk through the realized scores in order (`|log(actual / forecast)| / sigma` of each day), starting
    from the nominal alpha; a day misses when its score exceeds that day's multiplier. A day without a
    score (NaN: no volatility known yet) leaves alpha_t as it was."""
    target = miss_rate(level)
    alpha_t = target
    alphas, multipliers, misses = [], [], []
    for score in np.asarray(realized_scores, dtype=float):
        multiplier = conformal_multiplier(sorted_scores, alpha_t)
        missed = bool(score > multiplier)
        alphas.append(alpha_t)
        multipliers.append(multiplier)
        misses.append(missed)
        if np.isfinite(score):
            alpha_t = next_alpha(alpha_t, target, missed, gamma)
    return AdaptiveRun(
        alphas=np.array(alphas, dtype=float),
        multipliers=np.array(multipliers, dtype=float),
        misses=np.array(misses, dtype=bool),
        next_alpha=alpha_t,
        next_multiplier=conformal_multiplier(sorted_scores, alpha_t),
    )


def adaptive_runs(
    sorted_scores: np.ndarray, realized_scores: np.ndarray, levels: tuple[int, ...], gamma: float = GAMMA
) -> dict[int, AdaptiveRun]:
    """`adaptive_run` for each level."""
    return {level: adaptive_run(sorted_scores, realized_scores, level, gamma) for level in levels}


def adaptive_intervals(
    sorted_scores: np.ndarray,
    actual: np.ndarray,
    forecast: np.ndarray,
    sigma: np.ndarray,
    levels: tuple[int, ...],
    gamma: float = GAMMA,
) -> dict[int, Interval]:
    """Each day's ACI interval, walking through the days in order: day t's from the misses before t."""
    runs = adaptive_runs(sorted_scores, scaled_scores(actual, forecast, sigma), levels, gamma)
    return scaled_intervals(forecast, sigma, {level: run.multipliers for level, run in runs.items()})


def both_intervals(
    sorted_scores: np.ndarray,
    actual: np.ndarray,
    forecast: np.ndarray,
    sigma: np.ndarray,
    levels: tuple[int, ...],
    gamma: float = GAMMA,
) -> dict[str, dict[int, Interval]]:
    """Each day's static and adaptive intervals from the same calibration scores, by way."""
    return {
        STATIC_INTERVALS: scaled_intervals(forecast, sigma, multipliers_from_scores(sorted_scores, levels)),
        ADAPTIVE_INTERVALS: adaptive_intervals(sorted_scores, actual, forecast, sigma, levels, gamma),
    }
