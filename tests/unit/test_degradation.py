"""deployment/degradation.py, the pure rules of `monitor`: which forecast rows are scored, the realized
metrics, one row per model version, which rows the tests take, and when the tests flag a champion (the
statistics worked by hand; scipy only turns a hand statistic into a p-value)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from flow_steps.config.names import (
    DATE_COLUMN,
    FORECAST_COLUMN,
    LAST_CLOSE_COLUMN,
    MODEL_VERSION_COLUMN,
    PRICE_COLUMN,
)
from flow_steps.deployment.degradation import (
    ACTUAL_COLUMN,
    RUN_COLUMN,
    by_version,
    judge,
    one_step_days,
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


def test_the_tests_take_each_forecasts_first_day_once_per_date_in_date_order():
    rows = pd.concat(
        [
            forecasts("b", "1", ["2020-01-06"], [10.0], 11.0, 0.1),  # made on the 3rd: 1 day ahead
            forecasts("a", "1", ["2020-01-03", "2020-01-06"], [10.5, 10.5], 10.0, 0.6),  # 1 and 2 ahead
            forecasts("c", "1", ["2020-01-03"], [10.7], 10.0, 0.6),  # the 3rd again, 1 ahead
        ]
    )
    scored = scored_days(rows, PRICES)
    assert sorted(zip(scored[RUN_COLUMN], scored["days_ahead"], strict=True)) == [
        ("a", 1),
        ("a", 2),
        ("b", 1),
        ("c", 1),
    ]
    first = one_step_days(scored)
    assert first[DATE_COLUMN].dt.strftime("%Y-%m-%d").tolist() == ["2020-01-03", "2020-01-06"]
    assert first[RUN_COLUMN].tolist() == ["a", "b"]  # the first found of the 3rd (sorted by run), b's 6th


def champion_days(errors, naive_errors, inside_80, inside_95=None) -> pd.DataFrame:
    """Scored one-day-ahead rows on consecutive weekdays."""
    n = len(errors)
    return pd.DataFrame(
        {
            DATE_COLUMN: pd.bdate_range("2020-01-01", periods=n),
            "days_ahead": 1,
            RUN_COLUMN: [f"r{day}" for day in range(n)],
            "error": errors,
            "naive_error": naive_errors,
            "inside_80": inside_80,
            "inside_95": np.nan if inside_95 is None else inside_95,
        }
    )


def test_with_too_few_days_no_test_runs_and_each_says_how_many_it_needs():
    judgement = judge(champion_days([5.0] * 15, [1.0] * 15, [0.0] * 15, [0.0] * 15), 0.05)
    assert judgement.degradation is None
    assert judgement.too_few_days == (
        "15 one-day-ahead days scored: Diebold-Mariano needs 16; Kupiec and Christoffersen at 80% need 25; "
        "Kupiec and Christoffersen at 95% need 100"
    )
    assert judgement.metrics == {"realized_tested_days": 15.0}


def test_a_champion_significantly_worse_than_naive_is_flagged_by_diebold_mariano():
    # 16 days: squared errors 4 against naive's 1 and 2.25 in turn: d = [3, 1.75] x 8, mean 2.375,
    # spread 0.625; statistic 2.375 / (0.625 / 4) * sqrt(15 / 16) = 14.7173367; p = P(t_15 >= it).
    days = champion_days([2.0] * 16, [1.0, 1.5] * 8, [1.0] * 16)
    judgement = judge(days, 0.05)
    assert judgement.metrics["realized_dm_statistic"] == pytest.approx(14.717336715588184, rel=1e-12)
    p_value = judgement.metrics["realized_dm_p_value"]
    assert p_value == pytest.approx(stats.t(15).sf(14.717336715588184), rel=1e-9)
    assert judgement.degradation == (
        f"Diebold-Mariano test: realized RMSE 2 against the naive forecast's 1.275 over 16 days, "
        f"p={p_value:.3g} <= monitor_alpha 0.05"
    )
    assert judgement.too_few_days == "16 one-day-ahead days scored: Kupiec and Christoffersen at 80% need 25"
    # monitor_alpha on the p-value flags; just below it does not.
    assert judge(days, p_value).degradation is not None
    assert judge(days, np.nextafter(p_value, 0)).degradation is None


def test_a_champion_no_worse_than_naive_is_not_flagged():
    same = champion_days([1.0, -1.5] * 8, [1.0, -1.5] * 8, [1.0] * 16)  # identical errors: no evidence
    assert judge(same, 0.5).degradation is None
    assert judge(same, 0.5).metrics["realized_dm_p_value"] == 1.0


def test_an_80_percent_interval_that_misses_too_often_fails_kupiec():
    # 15 misses of 25 at 80% (expected 5): LR = -2 (10 ln 0.8 + 15 ln 0.2) + 2 (10 ln 0.4 + 15 ln 0.6)
    # = 19.0954250; p = P(chi2_1 >= it) = 1.24e-05.
    inside = [0.0, 1.0, 0.0, 0.0, 1.0] * 5
    judgement = judge(champion_days([1.0] * 25, [1.0] * 25, inside), 0.05)
    assert judgement.metrics["kupiec_80_statistic"] == pytest.approx(19.095425048844376, rel=1e-12)
    assert judgement.metrics["kupiec_80_p_value"] == pytest.approx(stats.chi2(1).sf(19.095425048844376))
    assert judgement.degradation.startswith(
        "Kupiec test: the 80% interval missed 15 of 25 days (expected 5), p=1.24e-05 <= monitor_alpha 0.05; "
        "Christoffersen test: the 80% interval missed 15 of 25 days (expected 5), 5 of them right after a "
        "miss, p="
    )
    assert "kupiec_95_p_value" not in judgement.metrics  # no 95% interval in these rows
    assert judgement.too_few_days is None


def test_an_interval_that_covers_as_its_level_says_is_not_flagged():
    inside = [1.0, 1.0, 1.0, 1.0, 0.0] * 5  # 5 misses of 25, scattered: exactly the expected rate
    judgement = judge(champion_days([1.0] * 25, [1.0] * 25, inside), 0.05)
    assert judgement.degradation is None
    assert judgement.metrics["kupiec_80_p_value"] == pytest.approx(1.0)
