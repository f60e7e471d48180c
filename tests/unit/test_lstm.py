"""Training and backtests, with tiny LSTMs and no tracking store."""

import gc
import os
import signal

import keras
import numpy as np
import pandas as pd
import pytest

from flow_steps.config.errors import PipelineError
from flow_steps.config.values import TrainParams, check_train_params
from flow_steps.runtime.interruption import Interrupted, interruptions_held
from flow_steps.training.evaluation import (
    BASELINES,
    LSTM,
    NAIVE,
    STATISTICAL_PEERS,
    backtest_ranges,
    backtest_summary,
)
from flow_steps.training.lstm import EAGER_MAX_WORK, evaluate_split, fit_lstm, training_steps, walk_forward

TINY = TrainParams(lstm_units=4, window=8, epochs=1, batch_size=16, patience=2, ma_window=3, knn_neighbors=5)


def random_walk(n_rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    closes = 30 * np.exp(np.cumsum(rng.normal(0.0005, 0.015, n_rows)))
    return pd.DataFrame({"Date": pd.bdate_range("2015-01-01", periods=n_rows), "Close": closes})


@pytest.mark.slow
def test_split_scores_the_lstm_and_every_baseline_on_the_same_days():
    prices = random_walk(150)
    split = evaluate_split(prices, 30, TINY)
    assert list(split.forecasts) == [LSTM, *BASELINES, *STATISTICAL_PEERS]
    assert all(len(values) == 30 for values in split.forecasts.values())
    np.testing.assert_array_equal(split.actual, prices["Close"].to_numpy()[-30:])
    assert split.dates.iloc[0] == prices["Date"].iloc[-30]
    assert split.table["model"].tolist() == [LSTM, *BASELINES, *STATISTICAL_PEERS]
    # intervals for the LSTM, the naive baseline and statsforecast's peers, scored at 80% and 95%
    assert set(split.intervals) == {LSTM, NAIVE, *STATISTICAL_PEERS}
    for prefix in ("", "naive_", "autoarima_", "autoets_"):
        for level in (80, 95):
            assert 0 <= split.metrics[f"{prefix}test_coverage_{level}"] <= 1
            assert split.metrics[f"{prefix}test_interval_score_{level}"] > 0
    assert {"autoarima_fit_seconds", "autoets_fit_seconds"} <= split.metrics.keys()
    lstm_80, lstm_95 = split.intervals[LSTM][80], split.intervals[LSTM][95]
    assert np.all(lstm_95.lower < lstm_80.lower) and np.all(lstm_80.lower < split.forecasts[LSTM])
    assert np.all(split.forecasts[LSTM] < lstm_80.upper) and np.all(lstm_80.upper < lstm_95.upper)
    history = split.lstm.history
    assert set(history) >= {"loss", "val_loss"} and 1 <= len(history["loss"]) <= TINY.epochs
    # the validation slice is the latest tenth of the training windows
    assert split.lstm.n_validation_samples == round((150 - 30 - TINY.window) * 0.1)


@pytest.mark.slow
def test_only_short_fits_run_eagerly():
    assert training_steps(207, 32, 1) == 7 and training_steps(2300, 32, 50) == 3600
    assert training_steps(207, 32, 1) * 10 <= EAGER_MAX_WORK  # the test suite's tiny pipelines
    assert training_steps(500, 32, 1) * 60 > EAGER_MAX_WORK  # 700 days, window 60, 1 epoch: traced
    split = evaluate_split(random_walk(120), 20, TINY)
    assert split.lstm.keras_model.run_eagerly  # 83 fit windows in batches of 16, 1 epoch, window 8


@pytest.mark.slow
def test_same_seed_same_forecasts():
    prices = random_walk(120)
    first, second = evaluate_split(prices, 20, TINY), evaluate_split(prices, 20, TINY)
    np.testing.assert_array_equal(first.forecasts[LSTM], second.forecasts[LSTM])


@pytest.mark.slow
def test_a_traced_model_fitted_again_trains_as_a_fresh_one_and_never_while_its_fit_lives():
    """A universe worker reuses a traced model (its graphs) for the next fit of the same shape: the
    result equals a fresh model's to the bit, and a model is reused only once its fit is gone."""
    fit = dict(window=40, units=4, epochs=2, batch_size=16, validation_fraction=0.1, patience=2, seed=7)
    assert training_steps(171, 16, 2) * 40 > EAGER_MAX_WORK  # 250 days: traced, not eager
    first_closes, second_closes = (random_walk(250, seed)["Close"].to_numpy() for seed in (1, 2))
    first = fit_lstm(first_closes, **fit)
    first_weights = first.keras_model.get_weights()
    fresh = fit_lstm(second_closes, **fit)  # `first` still lives: a model of its own
    assert fresh.keras_model is not first.keras_model
    np.testing.assert_array_equal(first.keras_model.get_weights()[0], first_weights[0])
    traced_model = first.keras_model
    del first
    gc.collect()
    again = fit_lstm(second_closes, **fit)
    assert again.keras_model is traced_model  # reused, its graphs traced by the first fit
    assert again.history == fresh.history
    for reused, new in zip(again.keras_model.get_weights(), fresh.keras_model.get_weights(), strict=True):
        np.testing.assert_array_equal(reused, new)


@pytest.mark.slow
def test_lstm_never_sees_a_test_day_price_before_forecasting_it():
    prices = random_walk(120)
    n_test = 20
    original = evaluate_split(prices, n_test, TINY).forecasts[LSTM]
    day = len(prices) - n_test + 7
    shocked = prices.copy()
    shocked.loc[day:, "Close"] *= 3.0
    changed = evaluate_split(shocked, n_test, TINY).forecasts[LSTM]
    np.testing.assert_allclose(changed[:8], original[:8], rtol=1e-6)  # up to and including the shocked day
    assert not np.allclose(changed[8:], original[8:])


@pytest.mark.slow
def test_interval_calibration_uses_no_test_day_price():
    prices = random_walk(150)
    n_test = 30
    original = evaluate_split(prices, n_test, TINY)
    shocked = prices.copy()
    shocked.loc[len(prices) - n_test :, "Close"] *= np.exp(np.linspace(0.0, 0.5, n_test))  # a new trend
    changed = evaluate_split(shocked, n_test, TINY)
    assert changed.multipliers == original.multipliers
    # the first test day's interval rests on earlier closes only; later ones follow the new volatility
    for level in (80, 95):
        assert changed.intervals[LSTM][level].lower[0] == pytest.approx(
            original.intervals[LSTM][level].lower[0]
        )
    assert changed.metrics["test_coverage_80"] != original.metrics["test_coverage_80"]


def test_backtest_cuts_the_test_period_into_consecutive_folds():
    assert backtest_ranges(100, 20, 4) == [(80, 85), (85, 90), (90, 95), (95, 100)]
    assert backtest_ranges(100, 21, 2) == [(79, 90), (90, 100)]
    with pytest.raises(PipelineError, match="backtest_folds=5 would leave fewer than 5 test days"):
        backtest_ranges(100, 20, 5)


@pytest.mark.slow
def test_walk_forward_refits_before_each_fold_and_averages_the_folds():
    prices = random_walk(160)
    params = TrainParams(**{**TINY.__dict__, "backtest_folds": 2, "test_fraction": 0.25})
    folds = walk_forward(prices, params)
    assert [len(fold.actual) for fold in folds] == [20, 20]
    assert folds[0].dates.iloc[0] == prices["Date"].iloc[120]
    assert folds[1].dates.iloc[0] == prices["Date"].iloc[140]
    table, means = backtest_summary([fold.table for fold in folds], [fold.metrics for fold in folds])
    assert table["fold"].tolist() == [0] * 7 + [1] * 7  # the LSTM, 4 baselines, 2 statistical peers
    assert means["backtest_test_rmse_vs_naive"] == pytest.approx(
        np.mean([fold.metrics["test_rmse_vs_naive"] for fold in folds])
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lstm_units": 0}, "lstm_units must be at least 1"),
        ({"window": 0}, "window must be at least 1"),
        ({"test_fraction": 0.6}, r"test_fraction must be in \(0, 0.5\]"),
        ({"validation_fraction": 0.0}, "validation_fraction"),
        ({"backtest_folds": -1}, "backtest_folds"),
        ({"ma_window": 70}, "ma_window"),
    ],
)
def test_bad_parameters_are_refused(change, message):
    with pytest.raises(PipelineError, match=message):
        check_train_params(TrainParams(**{**TrainParams().__dict__, **change}))


class SignalAtFirstBatch(keras.callbacks.Callback):
    """Sends this process SIGTERM as the first batch starts; counts the batches that start."""

    def __init__(self):
        super().__init__()
        self.batches_started = 0

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self.batches_started += 1
        if self.batches_started == 1:
            os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.slow
def test_a_signal_held_while_training_stops_the_fit_after_its_batch(signals_raise):
    counter = SignalAtFirstBatch()
    with pytest.raises(Interrupted) as caught, interruptions_held():
        fit_lstm(random_walk(200)["Close"].to_numpy(), 8, 4, 50, 16, 0.1, 50, 0, callbacks=[counter])
    assert counter.batches_started == 1  # of 11 batches an epoch for 50 epochs
    assert caught.traceback[-1].name == "raise_if_interrupted"  # after the batch, not inside it
