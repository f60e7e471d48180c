"""The LSTM and the served pyfunc wrapper, without a tracking store."""

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from flow_steps.config.errors import DataValidationError
from flow_steps.config.names import DAYS_AHEAD_COLUMN, FORECAST_COLUMN, MAX_HORIZON
from flow_steps.model.adaptive import ANSWER_INTERVAL_COLUMNS, adaptive_run, answer_columns
from flow_steps.model.features import ReturnScaler
from flow_steps.model.intervals import (
    INTERVAL_COLUMNS,
    ewma_volatility,
    latest_volatility,
    multipliers_from_scores,
    scaled_scores,
)
from flow_steps.model.pyfunc import LstmPriceForecaster, predict_next_closes
from flow_steps.training.network import build_lstm


@pytest.fixture(scope="module")
def tiny_lstm():
    import keras

    keras.utils.set_random_seed(0)
    return build_lstm(window=5, units=4)


def test_lstm_maps_windows_to_one_value(tiny_lstm):
    assert tiny_lstm.output_shape == (None, 1)
    assert len([layer for layer in tiny_lstm.layers if "lstm" in layer.name]) == 2


def test_forecasts_scale_with_the_price_level(tiny_lstm):
    windows = np.array([[10.0, 10.5, 10.2, 10.8, 11.0]])
    scaler = ReturnScaler(0.02)
    low = predict_next_closes(tiny_lstm, windows, scaler)
    high = predict_next_closes(tiny_lstm, windows * 30, scaler)
    np.testing.assert_allclose(high, low * 30, rtol=1e-5)


@pytest.fixture
def forecaster(tiny_lstm) -> LstmPriceForecaster:
    model = LstmPriceForecaster(window=5, return_scale=0.02, multipliers={80: 1.3, 95: 2.0})
    model._keras_model = tiny_lstm  # what load_context does with the logged artifact
    return model


def test_pyfunc_predicts_from_the_last_window(tiny_lstm, forecaster):
    closes = pd.DataFrame({"Close": [1.0, 2, 10.0, 10.5, 10.2, 10.8, 11.0]})
    answer = forecaster.predict(None, closes)
    expected = predict_next_closes(tiny_lstm, closes["Close"].to_numpy()[None, -5:], ReturnScaler(0.02))
    assert list(answer.columns) == [DAYS_AHEAD_COLUMN, FORECAST_COLUMN, *INTERVAL_COLUMNS]
    assert answer[DAYS_AHEAD_COLUMN].tolist() == [1]
    np.testing.assert_allclose(answer[FORECAST_COLUMN], expected)


def test_horizon_feeds_each_forecast_back_as_the_newest_close(tiny_lstm, forecaster):
    closes = [10.0, 10.5, 10.2, 10.8, 11.0, 11.3]
    answer = forecaster.predict(None, pd.DataFrame({"Close": closes}), params={"horizon": 3})
    assert answer[DAYS_AHEAD_COLUMN].tolist() == [1, 2, 3]
    history = list(closes)
    for forecast in answer[FORECAST_COLUMN]:  # step by step by hand: each step sees the previous forecast
        step = predict_next_closes(tiny_lstm, np.array([history[-5:]]), ReturnScaler(0.02))[0]
        np.testing.assert_allclose(forecast, step, rtol=1e-6)
        history.append(step)
    single = forecaster.predict(None, pd.DataFrame({"Close": closes}))
    np.testing.assert_allclose(single[FORECAST_COLUMN], answer[FORECAST_COLUMN][:1], rtol=1e-6)


def test_intervals_scale_with_the_requests_volatility_and_widen_with_the_horizon(forecaster):
    calm = 100 * np.exp(np.cumsum(np.tile([0.004, -0.003], 20)))
    stormy = 100 * np.exp(np.cumsum(np.tile([0.04, -0.03], 20)))
    answers = {
        name: forecaster.predict(None, pd.DataFrame({"Close": closes}), params={"horizon": 4})
        for name, closes in (("calm", calm), ("stormy", stormy))
    }
    for name, closes in (("calm", calm), ("stormy", stormy)):
        answer = answers[name]
        sigma = latest_volatility(closes)
        for level, multiplier in ((80, 1.3), (95, 2.0)):
            half_widths = np.log(answer[f"upper_{level}"] / answer[FORECAST_COLUMN])
            np.testing.assert_allclose(half_widths, multiplier * sigma * np.sqrt([1, 2, 3, 4]), rtol=1e-9)
            np.testing.assert_allclose(
                np.log(answer[FORECAST_COLUMN] / answer[f"lower_{level}"]), half_widths, rtol=1e-9
            )
    calm_width = answers["calm"]["upper_80"] / answers["calm"]["lower_80"]
    assert np.all(answers["stormy"]["upper_80"] / answers["stormy"]["lower_80"] > calm_width)


def test_one_step_forecasts_score_each_day_from_the_days_before(tiny_lstm, forecaster):
    closes = np.array([10.0, 10.5, 10.2, 10.8, 11.0, 11.3, 11.1, 11.6])
    scored = forecaster.one_step_forecasts(closes, n_last=3)
    for offset, forecast in zip(range(3), scored, strict=True):
        day = len(closes) - 3 + offset
        one = forecaster.predict(None, pd.DataFrame({"Close": closes[:day]}))
        np.testing.assert_allclose(forecast, one[FORECAST_COLUMN].iloc[0], rtol=1e-6)
    with pytest.raises(DataValidationError, match="needs 5 closes before"):
        forecaster.one_step_forecasts(closes, n_last=4)


@pytest.mark.parametrize(
    ("frame", "params", "message"),
    [
        (pd.DataFrame({"Close": [1.0, 2.0]}), None, "needs at least 5"),
        (pd.DataFrame({"Price": [1.0] * 6}), None, "needs a 'Close' column; found columns: Price"),
        (pd.DataFrame({"Close": [1.0, 2, 3, 4, 0]}), None, "row 4 is not positive"),
        (pd.DataFrame({"Close": [1.0, 2, "x", 4, 5]}), None, "row 2 is not a number: 'x'"),
        (pd.DataFrame({"Close": [1.0, None, 3, 4, 5]}), None, "row 1 is missing"),
        (pd.DataFrame({"Close": [1.0, 2, 3, 4, float("inf")]}), None, "row 4 is not finite: inf"),
        (pd.DataFrame({"Close": [1.0] * 5}), {"horizon": 0}, "horizon must be between 1 and"),
        (pd.DataFrame({"Close": [1.0] * 5}), {"horizon": MAX_HORIZON + 1}, "horizon must be between"),
        (pd.DataFrame({"Close": [1.0] * 5}), {"horizon": 2.5}, "horizon must be a whole number"),
    ],
)
def test_pyfunc_refuses_bad_input_with_a_client_error(forecaster, frame, params, message):
    with pytest.raises(MlflowException, match=message) as caught:
        forecaster.predict(None, frame, params=params)
    assert caught.value.get_http_status_code() == 400


SCORES = np.linspace(0.01, 2.0, 200)  # calibration scores; the static 80% multiplier is the 161st


@pytest.fixture
def adaptive_forecaster(tiny_lstm) -> LstmPriceForecaster:
    static = multipliers_from_scores(SCORES)
    model = LstmPriceForecaster(window=5, return_scale=0.02, multipliers=static, scores=SCORES)
    model._keras_model = tiny_lstm
    return model


def storm(calm_days: int, storm_days: int) -> np.ndarray:
    """Calm closes (+-0.3%), then moves growing 15% a day: volatility always lags, so each one misses."""
    moves = [0.003 * (-1) ** day for day in range(calm_days)]
    moves += [0.003 * 1.15**day * (-1) ** day for day in range(1, storm_days + 1)]
    return 100 * np.exp(np.cumsum([0.0, *moves]))


def half_width(answer: pd.DataFrame, method: str, level: int = 80) -> float:
    lower, upper = answer_columns(method, level)
    return float(np.log(answer[upper] / answer[lower]).iloc[0]) / 2


def test_the_served_model_widens_its_intervals_after_a_run_of_misses_in_the_request(adaptive_forecaster):
    answer = adaptive_forecaster.predict(None, pd.DataFrame({"Close": storm(5, 30)}))
    assert list(answer.columns) == [DAYS_AHEAD_COLUMN, FORECAST_COLUMN, *ANSWER_INTERVAL_COLUMNS]
    static = multipliers_from_scores(SCORES)[80]
    sigma = latest_volatility(storm(5, 30))
    assert half_width(answer, "static") == pytest.approx(static * sigma, rel=1e-9)
    assert half_width(answer, "adaptive") > 1.1 * half_width(answer, "static")


def test_a_request_of_one_window_has_the_static_intervals_and_so_has_a_model_without_scores(
    adaptive_forecaster, forecaster
):
    closes = pd.DataFrame({"Close": storm(0, 4)})  # exactly window = 5 closes: nothing to adapt to
    answer = adaptive_forecaster.predict(None, closes)
    for level in (80, 95):
        assert half_width(answer, "adaptive", level) == pytest.approx(half_width(answer, "static", level))
    older = forecaster.predict(None, pd.DataFrame({"Close": storm(5, 30)}))  # logged before ACI
    assert list(older.columns) == [DAYS_AHEAD_COLUMN, FORECAST_COLUMN, *INTERVAL_COLUMNS]


def test_the_adaptive_multiplier_is_aci_over_the_requests_one_step_forecasts(adaptive_forecaster):
    closes = storm(10, 12)
    forecasts = adaptive_forecaster.one_step_forecasts(closes, n_last=len(closes) - 5)
    sigma = ewma_volatility(closes)[5 : len(closes)]
    expected = adaptive_run(SCORES, scaled_scores(closes[5:], forecasts, sigma), 95).next_multiplier
    assert adaptive_forecaster.multipliers_by_method(closes)["adaptive"][95] == pytest.approx(expected)
