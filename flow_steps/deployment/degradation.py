"""Degradation, pure: logged forecasts scored against the closes that then happened, and the tests that
flag a degraded champion.

A forecast row (one ticker, one date, from one forecast run) is scored once its date has a real close:
its error, the naive forecast's error over the same day (the last close known when the forecast was
made, for every day ahead), and whether the close fell inside its 80% and 95% intervals. Rows whose
date has no close (a future day, a holiday of a forecast dated without a calendar) are left out.

The tests (deployment/evidence.py) take one-day-ahead rows only, one per date, in date order: the
later days of one forecast share its errors (a 5-day path's errors are sums of the same returns), and
overlapping forecasts share days, so only the first day of each forecast is a sample that the tests'
assumptions (h = 1: serially uncorrelated loss differentials; independent misses under the null) fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from flow_steps.config.names import (
    DATE_COLUMN,
    DAYS_AHEAD_COLUMN,
    FORECAST_COLUMN,
    LAST_CLOSE_COLUMN,
    METRIC_MONITOR_P_VALUE,
    METRIC_MONITOR_STATISTIC,
    METRIC_TESTED_DAYS,
    PRICE_COLUMN,
    coverage_test_metric,
)
from flow_steps.config.names import MODEL_VERSION_COLUMN as VERSION_COLUMN
from flow_steps.deployment.evidence import (
    MIN_DM_DAYS,
    TestResult,
    christoffersen,
    dm_hln_test,
    kupiec_pof,
    min_coverage_days,
)
from flow_steps.model.intervals import LEVELS, lower_column, upper_column

RUN_COLUMN = "forecast_run_id"
ACTUAL_COLUMN = "actual_close"


def scored_days(forecasts: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """The forecast rows whose date has a real close, with that close, the naive forecast's, each
    interval's hit (`inside_80`, `inside_95`; NaN when the forecast had no interval) and the row's place
    in its forecast (`days_ahead`: 1 for its first day)."""
    closes = prices[[DATE_COLUMN, PRICE_COLUMN]].rename(columns={PRICE_COLUMN: ACTUAL_COLUMN})
    frame = forecasts.assign(**{DATE_COLUMN: pd.to_datetime(forecasts[DATE_COLUMN])})
    if DAYS_AHEAD_COLUMN not in frame:
        frame[DAYS_AHEAD_COLUMN] = frame.groupby(RUN_COLUMN, sort=False).cumcount() + 1
    scored = frame.merge(closes.assign(**{DATE_COLUMN: pd.to_datetime(closes[DATE_COLUMN])}), on=DATE_COLUMN)
    actual = scored[ACTUAL_COLUMN].to_numpy(dtype=float)
    scored["error"] = actual - scored[FORECAST_COLUMN].to_numpy(dtype=float)
    scored["naive_error"] = actual - scored[LAST_CLOSE_COLUMN].to_numpy(dtype=float)
    for level in LEVELS:
        if lower_column(level) in scored:
            lower, upper = scored[lower_column(level)], scored[upper_column(level)]
            scored[f"inside_{level}"] = ((actual >= lower) & (actual <= upper)).astype(float)
        else:
            scored[f"inside_{level}"] = np.nan
    return scored.sort_values([DATE_COLUMN, RUN_COLUMN]).reset_index(drop=True)


def realized_metrics(scored: pd.DataFrame) -> dict[str, float]:
    """RMSE, the naive forecast's RMSE over the same days, their ratio and each interval's coverage."""
    rmse = float(np.sqrt(np.mean(scored["error"] ** 2)))
    naive_rmse = float(np.sqrt(np.mean(scored["naive_error"] ** 2)))
    metrics = {
        "forecasts": float(scored[RUN_COLUMN].nunique()),
        "days": float(len(scored)),
        "rmse": rmse,
        "naive_rmse": naive_rmse,
        "rmse_vs_naive": rmse / naive_rmse if naive_rmse > 0 else float("nan"),
    }
    for level in LEVELS:
        metrics[f"coverage_{level}"] = float(scored[f"inside_{level}"].mean())  # NaN without intervals
    return metrics


def by_version(scored: pd.DataFrame) -> pd.DataFrame:
    """One row of realized metrics per model version, newest version first."""
    rows = [
        {VERSION_COLUMN: version, **realized_metrics(group)}
        for version, group in scored.groupby(VERSION_COLUMN, sort=False)
    ]
    return pd.DataFrame(rows).sort_values(VERSION_COLUMN, ascending=False, key=_version_order)


def _version_order(versions: pd.Series) -> pd.Series:
    return pd.to_numeric(versions, errors="coerce").fillna(-1)


def one_step_days(scored: pd.DataFrame) -> pd.DataFrame:
    """The scored first days of the forecasts (`days_ahead` 1), one per date (the first found), by date."""
    first_days = scored[scored[DAYS_AHEAD_COLUMN] == 1]
    return first_days.drop_duplicates(DATE_COLUMN).sort_values(DATE_COLUMN).reset_index(drop=True)


@dataclass(frozen=True)
class Judgement:
    """What the tests say of a champion: why it is degraded (None: no test rejects), which tests had too
    few days and how many they need (None: all ran), and the statistics and p-values to log."""

    degradation: str | None
    too_few_days: str | None
    metrics: dict[str, float]


def judge(champion_days: pd.DataFrame, alpha: float) -> Judgement:
    """Test the champion's one-day-ahead scored days at level `alpha`: Diebold-Mariano (HLN) against the
    naive forecast (H1: its squared errors are higher), and Kupiec's and Christoffersen's tests of each
    interval. A test with too few days for its law to hold runs not, and says how many it needs."""
    days = one_step_days(champion_days)
    n = len(days)
    reasons, waiting, metrics = [], [], {METRIC_TESTED_DAYS: float(n)}
    if n >= MIN_DM_DAYS:
        errors, naive_errors = days["error"].to_numpy(float), days["naive_error"].to_numpy(float)
        accuracy = dm_hln_test(errors**2, naive_errors**2, alternative="greater")
        metrics |= {METRIC_MONITOR_STATISTIC: accuracy.statistic, METRIC_MONITOR_P_VALUE: accuracy.p_value}
        if accuracy.rejects(alpha):
            reasons.append(
                f"Diebold-Mariano test: realized RMSE {np.sqrt(np.mean(errors**2)):.4g} against the naive "
                f"forecast's {np.sqrt(np.mean(naive_errors**2)):.4g} over {n} days, "
                f"{_significance(accuracy, alpha)}"
            )
    else:
        waiting.append(f"Diebold-Mariano needs {MIN_DM_DAYS}")
    for level in LEVELS:
        hits = days[f"inside_{level}"]
        if hits.isna().any():
            continue  # forecasts without this interval: nothing to test
        needed = min_coverage_days(level)
        if n < needed:
            waiting.append(f"Kupiec and Christoffersen at {level}% need {needed}")
            continue
        misses = (1 - hits.to_numpy(float)).astype(int)
        missed, expected = int(misses.sum()), n * (100 - level) / 100
        kupiec, markov = kupiec_pof(missed, n, level), christoffersen(misses, level)
        for name, result in (("kupiec", kupiec), ("christoffersen", markov)):
            metrics[coverage_test_metric(name, level, "statistic")] = result.statistic
            metrics[coverage_test_metric(name, level, "p_value")] = result.p_value
        if kupiec.rejects(alpha):
            reasons.append(
                f"Kupiec test: the {level}% interval missed {missed} of {n} days (expected {expected:.3g}), "
                f"{_significance(kupiec, alpha)}"
            )
        if markov.rejects(alpha):
            after_a_miss = int(np.sum(misses[1:] & misses[:-1]))
            reasons.append(
                f"Christoffersen test: the {level}% interval missed {missed} of {n} days (expected "
                f"{expected:.3g}), {after_a_miss} of them right after a miss, {_significance(markov, alpha)}"
            )
    too_few = f"{n} one-day-ahead days scored: {'; '.join(waiting)}" if waiting else None
    return Judgement("; ".join(reasons) or None, too_few, metrics)


def _significance(result: TestResult, alpha: float) -> str:
    return f"p={result.p_value:.3g} <= monitor_alpha {alpha:g}"
