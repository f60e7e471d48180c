"""Degradation, pure: logged forecasts scored against the closes that then happened, and the rule that
flags a degraded champion.

A forecast row (one ticker, one date, from one forecast run) is scored once its date has a real close:
its error, the naive forecast's error over the same day (the last close known when the forecast was
made, for every day ahead), and whether the close fell inside its 80% and 95% intervals. Rows whose
date has no close (a future day, a holiday of a forecast dated without a calendar) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from flow_steps.config.names import (
    DATE_COLUMN,
    FORECAST_COLUMN,
    LAST_CLOSE_COLUMN,
    PRICE_COLUMN,
)
from flow_steps.config.names import MODEL_VERSION_COLUMN as VERSION_COLUMN
from flow_steps.model.intervals import LEVELS, lower_column, upper_column

RUN_COLUMN = "forecast_run_id"
ACTUAL_COLUMN = "actual_close"


def scored_days(forecasts: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """The forecast rows whose date has a real close, with that close, the naive forecast's and each
    interval's hit (`inside_80`, `inside_95`; NaN when the forecast had no interval)."""
    closes = prices[[DATE_COLUMN, PRICE_COLUMN]].rename(columns={PRICE_COLUMN: ACTUAL_COLUMN})
    frame = forecasts.assign(**{DATE_COLUMN: pd.to_datetime(forecasts[DATE_COLUMN])})
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


@dataclass(frozen=True)
class Thresholds:
    """When a champion counts as degraded."""

    max_rmse_vs_naive: float
    min_coverage_80: float
    max_coverage_80: float


def degradation(metrics: dict[str, float], thresholds: Thresholds) -> str | None:
    """Why the realized metrics say the model is degraded, or None when they do not."""
    reasons = []
    if metrics["rmse_vs_naive"] > thresholds.max_rmse_vs_naive:
        reasons.append(
            f"realized RMSE / naive {metrics['rmse_vs_naive']:.3f} > max_rmse_vs_naive "
            f"{thresholds.max_rmse_vs_naive}"
        )
    coverage = metrics["coverage_80"]
    if np.isfinite(coverage) and not thresholds.min_coverage_80 <= coverage <= thresholds.max_coverage_80:
        reasons.append(
            f"80% interval covered {coverage:.1%}, outside [{thresholds.min_coverage_80}, "
            f"{thresholds.max_coverage_80}]"
        )
    return "; ".join(reasons) or None
