"""Prediction intervals: scaled by recent volatility, calibrated before the test days, and scored.

An interval for the close of day t is `forecast * exp(+-q * sigma_t * sqrt(days_ahead))`:
- `sigma_t` is an exponentially weighted estimate of the daily log return's spread, from the closes
  before t only (RiskMetrics' decay of 0.94), so intervals widen in turbulent periods;
- `q` is calibrated on days before the test period: the conformal quantile of the absolute log errors
  `|log(actual / forecast)|` divided by their `sigma`;
- further ahead the spread grows with the square root of the days (a random walk's rule), the
  recursive forecast having no new information after the first day.

Pure numpy: the served model imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flow_steps.config.names import interval_method_prefix

LEVELS = (80, 95)  # nominal coverage, in percent
VOLATILITY_DECAY = 0.94
MIN_CALIBRATION_DAYS = 5
FEW_CALIBRATION_DAYS = 19  # fewer cannot place a 95% conformal quantile below the largest score


def lower_column(level: int) -> str:
    return f"lower_{level}"


def upper_column(level: int) -> str:
    return f"upper_{level}"


INTERVAL_COLUMNS = tuple(column(level) for level in LEVELS for column in (lower_column, upper_column))


def interval_columns(level: int, method: str = "") -> tuple[str, str]:
    """The answer's lower and upper columns at `level`: `lower_80`, or `static_lower_80` for a way
    that is not the default (flow_steps/model/adaptive.py)."""
    prefix = interval_method_prefix(method) if method else ""
    return prefix + lower_column(level), prefix + upper_column(level)


def ewma_volatility(closes: np.ndarray, decay: float = VOLATILITY_DECAY) -> np.ndarray:
    """`sigma[t]` for t in 0..len(closes): the spread of the log return into day t, from closes before t.

    The weighted root mean square of the earlier daily log returns, weights `decay ** age`, normalised
    so that no start-up value is needed. `sigma[0]` and `sigma[1]` are NaN (no return before them);
    `sigma[len(closes)]` is the estimate for the day after the last close.
    """
    returns = np.diff(np.log(np.asarray(closes, dtype=float)))
    sigma = np.full(len(returns) + 2, np.nan)
    weighted_squares = weights = 0.0
    for index, value in enumerate(returns):
        weighted_squares = decay * weighted_squares + value * value
        weights = decay * weights + 1.0
        sigma[index + 2] = np.sqrt(weighted_squares / weights)
    return sigma


def latest_volatility(closes: np.ndarray, decay: float = VOLATILITY_DECAY) -> float:
    """The spread of the next day's log return after the last of `closes`."""
    return float(ewma_volatility(closes, decay)[-1])


def scaled_scores(actual: np.ndarray, forecast: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Each day's conformity score `|log(actual / forecast)| / sigma`: its error in units of volatility."""
    errors = np.abs(np.log(np.asarray(actual, dtype=float) / np.asarray(forecast, dtype=float)))
    return errors / np.asarray(sigma, dtype=float)


def calibration_scores(actual: np.ndarray, forecast: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """The finite scaled scores of the calibration days, ascending; refused below MIN_CALIBRATION_DAYS."""
    scores = np.sort(scaled_scores(actual, forecast, sigma))
    scores = scores[np.isfinite(scores)]
    if len(scores) < MIN_CALIBRATION_DAYS:
        raise ValueError(f"{len(scores)} calibration days, need at least {MIN_CALIBRATION_DAYS}")
    return scores


def calibrate(
    actual: np.ndarray, forecast: np.ndarray, sigma: np.ndarray, levels: tuple[int, ...] = LEVELS
) -> dict[int, float]:
    """Each level's multiplier `q` of sigma: the conformal quantile of `|log(actual / forecast)| / sigma`.

    With n calibration days the quantile is the ceil((n + 1) * level)-th smallest score (capped at n),
    the split-conformal rule that covers at least `level` of new days when they behave like these.
    """
    return multipliers_from_scores(calibration_scores(actual, forecast, sigma), levels)


def multipliers_from_scores(sorted_scores: np.ndarray, levels: tuple[int, ...] = LEVELS) -> dict[int, float]:
    """The static multipliers of ascending calibration scores (see `calibrate`)."""
    n = len(sorted_scores)
    rank = {level: min(n, int(np.ceil((n + 1) * level / 100))) for level in levels}
    return {level: float(sorted_scores[rank[level] - 1]) for level in levels}


@dataclass(frozen=True)
class Interval:
    lower: np.ndarray
    upper: np.ndarray


def scaled_intervals(
    forecast: np.ndarray,
    sigma: np.ndarray,
    multipliers: dict[int, float] | dict[int, np.ndarray],
    days_ahead: np.ndarray | int = 1,
) -> dict[int, Interval]:
    """`forecast * exp(+-q * sigma * sqrt(days_ahead))` for each level's multiplier `q` (or one per day)."""
    forecast = np.asarray(forecast, dtype=float)
    spread = np.asarray(sigma, dtype=float) * np.sqrt(np.asarray(days_ahead, dtype=float))
    return {
        level: Interval(forecast * np.exp(-q * spread), forecast * np.exp(q * spread))
        for level, q in multipliers.items()
    }


def constant_intervals(
    previous: np.ndarray, training_closes: np.ndarray, levels: tuple[int, ...] = LEVELS
) -> dict[int, Interval]:
    """The baseline: the naive forecast (previous close) times constant quantiles of training returns."""
    returns = np.diff(np.log(np.asarray(training_closes, dtype=float)))
    previous = np.asarray(previous, dtype=float)
    intervals = {}
    for level in levels:
        tail = (1 - level / 100) / 2
        low, high = np.quantile(returns, [tail, 1 - tail])
        intervals[level] = Interval(previous * np.exp(low), previous * np.exp(high))
    return intervals


def coverage(actual: np.ndarray, interval: Interval) -> float:
    """Share of days whose actual close lies inside the interval (bounds included)."""
    actual = np.asarray(actual, dtype=float)
    return float(np.mean((actual >= interval.lower) & (actual <= interval.upper)))


def interval_scores(actual: np.ndarray, interval: Interval, level: int) -> np.ndarray:
    """Each day's Winkler score: width, plus 2 / alpha times the distance by which the actual falls outside.

    Lower is better; a narrow interval that misses pays for each miss (Gneiting & Raftery 2007).
    """
    actual = np.asarray(actual, dtype=float)
    alpha = 1 - level / 100
    below = np.maximum(interval.lower - actual, 0)
    above = np.maximum(actual - interval.upper, 0)
    return interval.upper - interval.lower + 2 / alpha * (below + above)


def interval_score(actual: np.ndarray, interval: Interval, level: int) -> float:
    """The mean Winkler score over the days (see `interval_scores`)."""
    return float(np.mean(interval_scores(actual, interval, level)))


def interval_metrics(
    actual: np.ndarray, intervals: dict[int, Interval], prefix: str = ""
) -> dict[str, float]:
    """`<prefix>test_coverage_<level>` and `<prefix>test_interval_score_<level>` for each level."""
    metrics = {}
    for level, interval in intervals.items():
        metrics[f"{prefix}test_coverage_{level}"] = coverage(actual, interval)
        metrics[f"{prefix}test_interval_score_{level}"] = interval_score(actual, interval, level)
    return metrics
