"""The served model's request checks, interval column names, the return scaler, numbers given as text to
the features, the volatility and the intervals, and the ACI walk: what the complete mutation run of
2026-12-06 found no fast test reaching. Each case worked out by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from flow_steps.config.errors import DataValidationError
from flow_steps.model.adaptive import adaptive_run
from flow_steps.model.features import ReturnScaler, closes_from_scaled_returns, relative_log_prices
from flow_steps.model.intervals import ewma_volatility, interval_columns, scaled_intervals
from flow_steps.model.request_checks import closes_from_input


def test_interval_columns_without_a_method_are_the_default_names():
    # No method: no prefix. A method `static` prefixes `static_`.
    assert interval_columns(80) == ("lower_80", "upper_80")
    assert interval_columns(95, "static") == ("static_lower_95", "static_upper_95")


def test_missing_close_column_lists_every_column_found_comma_separated():
    frame = pd.DataFrame({"Date": ["2020-01-01"], "Open": [1.0]})
    with pytest.raises(DataValidationError) as raised:
        closes_from_input(frame, window=1)
    assert str(raised.value) == "input needs a 'Close' column; found columns: Date, Open"


@pytest.mark.parametrize(
    "model_input",
    [pd.DataFrame(), {"Open": [1.0, 2.0]}],
    ids=["frame-without-columns", "not-a-frame"],
)
def test_input_without_columns_is_refused_as_having_none(model_input):
    # A dict has no `columns` attribute and an empty frame has no column: both name "none".
    with pytest.raises(DataValidationError) as raised:
        closes_from_input(model_input, window=1)
    assert str(raised.value) == "input needs a 'Close' column; found columns: none"


def test_whole_number_closes_come_back_as_floats():
    # JSON prices 10, 11, 12 arrive as an integer column; the closes are the floats 10.0, 11.0, 12.0.
    closes = closes_from_input(pd.DataFrame({"Close": [10, 11, 12]}), window=3)
    assert closes.dtype == np.float64
    assert closes.tolist() == [10.0, 11.0, 12.0]


def test_inverse_transform_of_float32_model_output_is_computed_in_float64():
    # Keras answers in float32. float32(0.1) = 13421773 * 2**-27 = 0.100000001490116119384765625; times the
    # scale 3 that is 40265319 * 2**-27 = 0.300000004470348358154296875, exact in float64 (26 bits) but
    # rounded in float32 (24 bits).
    scaled = np.array([0.1], dtype=np.float32)
    returns = ReturnScaler(scale=3.0).inverse_transform(scaled)
    assert returns.dtype == np.float64
    assert returns[0] == 0.300000004470348358154296875


def test_return_scaler_transform_reads_numeric_text_as_floats():
    # 0.3 / 3 = 0.1
    np.testing.assert_allclose(ReturnScaler(scale=3.0).transform(["0.3"]), [0.1])


def test_relative_log_prices_read_numeric_text_as_floats():
    # last price 4: log(1 / 4) = -2 log 2, log(2 / 4) = -log 2, log(4 / 4) = 0
    log2 = math.log(2)
    np.testing.assert_allclose(relative_log_prices([["1", "2", "4"]]), [[-2 * log2, -log2, 0.0]])


def test_closes_from_scaled_returns_read_windows_given_as_text():
    # last close 10; scaled return 1 times the scale log 2 is log 2: 10 * exp(log 2) = 20
    closes = closes_from_scaled_returns([["5", "10"]], np.array([1.0]), ReturnScaler(scale=math.log(2)))
    np.testing.assert_allclose(closes, [20.0])


def test_ewma_volatility_reads_numeric_text_as_floats():
    """Closes 1, 2, 4: both log returns are log 2, so every weighted root mean square is log 2:
    sigma[2] = sqrt(log2^2 / 1), sigma[3] = sqrt((0.94 log2^2 + log2^2) / (0.94 + 1)) = log 2."""
    log2 = math.log(2)
    np.testing.assert_allclose(ewma_volatility(["1", "2", "4"]), [np.nan, np.nan, log2, log2])


def test_scaled_intervals_read_forecast_sigma_and_days_ahead_given_as_text():
    # spread 0.5 * sqrt(4) = 1, q = 2: forecast 10 times exp(-2) and exp(2)
    interval = scaled_intervals(["10"], ["0.5"], {80: 2.0}, days_ahead="4")[80]
    np.testing.assert_allclose(interval.lower, [10 * math.exp(-2)])
    np.testing.assert_allclose(interval.upper, [10 * math.exp(2)])


# Calibration scores 0.1 .. 0.4 (n = 4). At 50%: rank ceil((4 + 1) * 0.5) = 3, the multiplier 0.3.
SCORES = np.array([0.1, 0.2, 0.3, 0.4])


def test_adaptive_run_reads_realized_scores_given_as_text():
    """Day 1 at alpha 0.5: multiplier 0.3, score 0.35 misses; alpha_2 = 0.5 + 0.005 * (0.5 - 1) = 0.4975,
    rank ceil(5 * 0.5025) = 3: 0.3 again, score 0.05 inside. Then alpha = 0.4975 + 0.005 * 0.5 = 0.5."""
    run = adaptive_run(SCORES, ["0.35", "0.05"], 50)
    assert run.misses.tolist() == [True, False]
    assert run.multipliers.tolist() == [0.3, 0.3]
    assert run.alphas == pytest.approx([0.5, 0.4975])
    assert run.next_alpha == pytest.approx(0.5)
    assert run.next_multiplier == 0.3


def test_adaptive_run_over_no_days_has_boolean_misses_and_the_static_multiplier():
    """No realized day: nothing walked (the misses still a boolean array), alpha stays at 0.5, rank 3: 0.3."""
    run = adaptive_run(SCORES, [], 50)
    assert run.misses.dtype == np.bool_ and len(run.misses) == 0
    assert len(run.alphas) == len(run.multipliers) == 0
    assert run.next_alpha == 0.5
    assert run.next_multiplier == 0.3
