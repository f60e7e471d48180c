"""deployment/degradation.py, the pure rules of `monitor`: which forecast rows are scored, the realized
metrics, one row per model version, and when a champion counts as degraded (the spec's defaults)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from flow_steps.config.entry_points import BY_ENTRY_POINT
from flow_steps.config.names import (
    DATE_COLUMN,
    FORECAST_COLUMN,
    LAST_CLOSE_COLUMN,
    MODEL_VERSION_COLUMN,
    MONITOR_ENTRY_POINT,
    PRICE_COLUMN,
)
from flow_steps.deployment.degradation import (
    ACTUAL_COLUMN,
    RUN_COLUMN,
    Thresholds,
    by_version,
    degradation,
    realized_metrics,
    scored_days,
)

PRICES = pd.DataFrame(
    {DATE_COLUMN: pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-06"]), PRICE_COLUMN: [10.0, 11.0, 9.0]}
)


def forecasts(run: str, version: str, dates: list[str], values: list[float], last_close: float, width: float):
    return pd.DataFrame(
        {
            DATE_COLUMN: dates,
            FORECAST_COLUMN: values,
            LAST_CLOSE_COLUMN: last_close,
            "lower_80": [value - width for value in values],
            "upper_80": [value + width for value in values],
            "lower_95": [value - 2 * width for value in values],
            "upper_95": [value + 2 * width for value in values],
            MODEL_VERSION_COLUMN: version,
            RUN_COLUMN: run,
        }
    )


def test_only_rows_whose_date_has_a_close_are_scored_against_it_and_the_naive_forecast():
    rows = forecasts("a", "1", ["2020-01-03", "2020-01-04", "2020-01-06"], [10.5, 10.5, 10.5], 10.0, 0.6)
    scored = scored_days(rows, PRICES)
    assert scored[DATE_COLUMN].dt.strftime("%Y-%m-%d").tolist() == ["2020-01-03", "2020-01-06"]  # no Saturday
    assert scored[ACTUAL_COLUMN].tolist() == [11.0, 9.0]
    assert scored["error"].tolist() == [0.5, -1.5]
    assert scored["naive_error"].tolist() == [1.0, -1.0]  # the last close known when it was made
    assert scored["inside_80"].tolist() == [1.0, 0.0]  # 11 in [9.9, 11.1]; 9 not
    assert scored["inside_95"].tolist() == [1.0, 0.0]  # 9 not in [9.3, 11.7]


def test_a_forecast_without_intervals_has_no_coverage():
    rows = forecasts("a", "1", ["2020-01-03"], [10.5], 10.0, 0.6).drop(
        columns=["lower_80", "upper_80", "lower_95", "upper_95"]
    )
    metrics = realized_metrics(scored_days(rows, PRICES))
    assert math.isnan(metrics["coverage_80"]) and math.isnan(metrics["coverage_95"])
    assert degradation(metrics, Thresholds(1.1, 0.65, 0.95)) is None  # no interval: not judged on one


def test_realized_metrics_by_hand():
    rows = forecasts("a", "1", ["2020-01-03", "2020-01-06"], [10.5, 10.5], 10.0, 0.6)
    metrics = realized_metrics(scored_days(rows, PRICES))
    rmse, naive = math.sqrt((0.5**2 + 1.5**2) / 2), 1.0
    assert metrics == pytest.approx(
        {
            "forecasts": 1,
            "days": 2,
            "rmse": rmse,
            "naive_rmse": naive,
            "rmse_vs_naive": rmse / naive,
            "coverage_80": 0.5,
            "coverage_95": 0.5,
        }
    )


def test_one_row_per_version_newest_first_in_number_order():
    rows = pd.concat(
        [
            forecasts(run, version, ["2020-01-03"], [11.0], 10.0, 0.1)
            for run, version in (("a", "9"), ("b", "10"), ("c", "9"), ("d", "2"))
        ]
    )
    table = by_version(scored_days(rows, PRICES))
    assert table[MODEL_VERSION_COLUMN].tolist() == ["10", "9", "2"]  # "10" is newer than "9"
    assert table["forecasts"].tolist() == [1, 2, 1]


DEFAULTS = Thresholds(
    *(
        next(param.default for param in BY_ENTRY_POINT[MONITOR_ENTRY_POINT].params if param.name == name)
        for name in ("max_rmse_vs_naive", "min_coverage_80", "max_coverage_80")
    )
)


@pytest.mark.parametrize(
    ("ratio", "coverage", "flagged"),
    [
        (DEFAULTS.max_rmse_vs_naive, DEFAULTS.min_coverage_80, None),  # at the limits: sound
        (np.nextafter(DEFAULTS.max_rmse_vs_naive, 2), 0.8, "max_rmse_vs_naive"),
        (1.0, np.nextafter(DEFAULTS.min_coverage_80, 0), "80% interval covered"),
        (1.0, np.nextafter(DEFAULTS.max_coverage_80, 1), "80% interval covered"),
    ],
)
def test_the_default_thresholds_flag_a_champion_just_past_them(ratio, coverage, flagged):
    reason = degradation({"rmse_vs_naive": ratio, "coverage_80": coverage}, DEFAULTS)
    assert (reason is None) if flagged is None else (flagged in reason)


def test_both_reasons_are_given_in_one_line():
    reason = degradation({"rmse_vs_naive": 2.0, "coverage_80": 0.1}, DEFAULTS)
    assert reason.count("; ") == 1 and "\n" not in reason
