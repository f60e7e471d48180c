"""The LSTM and its pyfunc wrapper, without a tracking store."""

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from flow_steps.model import OUTPUT_COLUMN, LstmPriceForecaster, build_lstm, predict_next_closes
from flow_steps.preparation import ReturnScaler


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


def test_pyfunc_predicts_from_the_last_window(tiny_lstm):
    forecaster = LstmPriceForecaster(window=5, return_scale=0.02)
    forecaster._keras_model = tiny_lstm  # what load_context does with the logged artifact
    closes = pd.DataFrame({"Close": [1.0, 2, 10.0, 10.5, 10.2, 10.8, 11.0]})
    answer = forecaster.predict(None, closes)
    expected = predict_next_closes(tiny_lstm, closes["Close"].to_numpy()[None, -5:], ReturnScaler(0.02))
    assert list(answer.columns) == [OUTPUT_COLUMN]
    np.testing.assert_allclose(answer[OUTPUT_COLUMN], expected)


def test_pyfunc_refuses_bad_input_with_a_client_error(tiny_lstm):
    forecaster = LstmPriceForecaster(window=5, return_scale=0.02)
    forecaster._keras_model = tiny_lstm
    with pytest.raises(MlflowException, match="needs at least 5") as caught:
        forecaster.predict(None, pd.DataFrame({"Close": [1.0, 2.0]}))
    assert caught.value.get_http_status_code() == 400
