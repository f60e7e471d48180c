"""What the train_model step records on its run: the fit's epochs, the test days' predictions, the
evaluation table and figure, the walk-forward backtest. The pure work is in lstm.py and evaluation.py."""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import mlflow
import pandas as pd

from flow_steps.config.names import (
    BACKTEST_PATH,
    DATE_COLUMN,
    FORECAST_PLOT_PATH,
    METRIC_N_TEST_DAYS,
    METRIC_TEST_RMSE_VS_NAIVE,
    METRIC_TRAIN_LOSS,
    METRIC_VAL_LOSS,
    METRICS_TABLE_PATH,
    PREDICTIONS_PATH,
    TAG_STOCK_DATA_SHA256,
)
from flow_steps.config.values import TrainParams, check_train_params
from flow_steps.data.reading import sha256_bytes
from flow_steps.model.adaptive import DEFAULT_INTERVALS, OTHER_INTERVALS, answer_columns
from flow_steps.model.features import check_enough_rows, holdout_size
from flow_steps.runtime.inputs import log_prices_input, read_prepared
from flow_steps.training.evaluation import LSTM, NAIVE, backtest_ranges, backtest_summary
from flow_steps.training.lstm import (
    KERAS_LOSS,
    KERAS_VAL_LOSS,
    SplitEvaluation,
    evaluate_split,
    limit_threads_from_environment,
    walk_forward,
)
from flow_steps.training.plots import forecast_figure

logger = logging.getLogger(__name__)


class EpochMetricsLogger(keras.callbacks.Callback):
    """Logs each epoch's training and validation loss to the active MLflow run (step = epoch).

    Asynchronously: training never waits on the tracking server; MLflow sends the queued metrics in the
    background (riding out an outage) and before the run ends."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        metrics = {
            name: float(logs[key])
            for key, name in ((KERAS_LOSS, METRIC_TRAIN_LOSS), (KERAS_VAL_LOSS, METRIC_VAL_LOSS))
            if key in logs
        }
        if metrics:
            mlflow.log_metrics(metrics, step=epoch, synchronous=False)


def fit_and_record(stock_data: str, params: TrainParams) -> tuple[pd.DataFrame, SplitEvaluation]:
    """Read prepared prices, fit and evaluate the LSTM next to the baselines on the last test days, and
    log the fit's metrics, the evaluation artifacts and the backtest; the prices and the evaluation."""
    check_train_params(params)
    limit_threads_from_environment()
    prices = read_prepared(stock_data, "stock_data")
    log_prices_input(prices, "stock_data", stock_data)
    mlflow.set_tag(TAG_STOCK_DATA_SHA256, sha256_bytes(Path(stock_data).read_bytes()))
    check_enough_rows(len(prices), params.window, params.test_fraction)
    n_test = holdout_size(len(prices), params.test_fraction)
    if params.backtest_folds:
        backtest_ranges(len(prices), n_test, params.backtest_folds)  # refuse bad folds before training

    logger.info("Training on %d days, testing on the last %d", len(prices) - n_test, n_test)
    split = evaluate_split(prices, n_test, params, callbacks=[EpochMetricsLogger()])
    mlflow.log_metrics(
        {
            "best_epoch": split.lstm.best_epoch,
            "epochs_trained": len(split.lstm.history[KERAS_LOSS]),
            "n_fit_samples": split.lstm.n_fit_samples,
            "n_validation_samples": split.lstm.n_validation_samples,
            METRIC_N_TEST_DAYS: len(split.actual),
            "train_seconds": split.lstm.train_seconds,
        }
    )
    log_split_artifacts(split, prices)
    if params.backtest_folds:
        log_backtest(walk_forward(prices, params))
    return prices, split


def log_split_artifacts(split: SplitEvaluation, prices: pd.DataFrame) -> None:
    bounds = {}  # lstm_lower_80, ... of the default intervals; lstm_adaptive_lower_80, ... of the other way
    for method in (DEFAULT_INTERVALS, OTHER_INTERVALS):
        for level, interval in split.lstm_intervals[method].items():
            lower, upper = answer_columns(method, level)
            bounds.update({lower: interval.lower, upper: interval.upper})
    predictions = pd.DataFrame(
        {
            DATE_COLUMN: split.dates,
            "actual": split.actual,
            **split.forecasts,
            **{f"lstm_{k}": v for k, v in bounds.items()},
        }
    )
    mlflow.log_text(predictions.to_csv(index=False, date_format="%Y-%m-%d"), PREDICTIONS_PATH)
    mlflow.log_text(split.table.to_csv(index=False), METRICS_TABLE_PATH)
    n_test = len(split.dates)
    first, last_training = prices[DATE_COLUMN].iloc[0].date(), prices[DATE_COLUMN].iloc[-n_test - 1].date()
    figure = forecast_figure(
        split.dates,
        split.actual,
        {"LSTM": split.forecasts[LSTM], "naive": split.forecasts[NAIVE]},
        band=(split.intervals[LSTM][80], "LSTM 80% interval"),
        title=f"One-day-ahead forecasts of {n_test} test days, trained on {first} .. {last_training}: "
        f"LSTM RMSE / naive RMSE = {split.metrics[METRIC_TEST_RMSE_VS_NAIVE]:.3f}",
    )
    mlflow.log_figure(figure, FORECAST_PLOT_PATH)


def log_backtest(folds: list[SplitEvaluation]) -> None:
    table, means = backtest_summary([fold.table for fold in folds], [fold.metrics for fold in folds])
    for index, fold in enumerate(folds):
        mlflow.log_metrics({f"fold_{name}": value for name, value in fold.metrics.items()}, step=index)
    mlflow.log_metrics(means)
    mlflow.log_text(table.to_csv(index=False), BACKTEST_PATH)
    logger.info(
        "Walk-forward backtest over %d folds: mean LSTM RMSE / naive RMSE %.3f",
        len(folds),
        means[f"backtest_{METRIC_TEST_RMSE_VS_NAIVE}"],
    )
