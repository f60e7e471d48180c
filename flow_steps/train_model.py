"""Step 3: train the LSTM on prepared prices, evaluate it next to the naive forecast, log the model."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import click
import keras
import mlflow
import numpy as np
import pandas as pd
import tensorflow as tf
from mlflow.models import infer_signature

from flow_steps.constants import (
    DATE_COLUMN,
    METRIC_NAIVE_TEST_RMSE,
    METRIC_TEST_RMSE,
    METRIC_TEST_RMSE_VS_NAIVE,
    METRIC_TRAIN_LOSS,
    MODEL_NAME,
    PREDICTIONS_PATH,
    PRICE_COLUMN,
    TRAIN_STEP,
)
from flow_steps.errors import PipelineError, SourceError
from flow_steps.evaluation import forecast_metrics, naive_forecast
from flow_steps.model import (
    KERAS_ARTIFACT,
    OUTPUT_COLUMN,
    RETURN_SCALE_CONFIG,
    WINDOW_CONFIG,
    build_lstm,
    predict_next_closes,
)
from flow_steps.options import TRAIN_OPTIONS, with_options
from flow_steps.preparation import (
    ReturnScaler,
    check_enough_rows,
    holdout_size,
    make_windows,
    model_inputs,
    next_log_returns,
    validate_prepared,
)
from flow_steps.step_run import run_step

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
MODEL_REQUIREMENTS = ("mlflow", "tensorflow", "keras", "numpy", "pandas", "cloudpickle")


@dataclass(frozen=True)
class TrainParams:
    """Hyper-parameters of train_model (names as in MLproject)."""

    lstm_units: int = 50
    window: int = 60
    epochs: int = 10
    batch_size: int = 32
    test_fraction: float = 0.2
    seed: int = 42

    def check(self) -> None:
        """Refuse out-of-range values before any work starts."""
        for name in ("lstm_units", "window", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise PipelineError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.test_fraction <= 0.5:
            raise PipelineError(f"test_fraction must be in (0, 0.5], got {self.test_fraction}")


@dataclass
class TrainResult:
    """A trained model, its preprocessing and its test-period forecasts."""

    keras_model: keras.Model
    scaler: ReturnScaler
    test_dates: pd.Series
    actual: np.ndarray
    lstm_forecast: np.ndarray
    naive_forecast: np.ndarray
    n_train_samples: int
    train_seconds: float

    def metrics(self) -> dict[str, float]:
        metrics = forecast_metrics(self.actual, self.lstm_forecast)
        naive = forecast_metrics(self.actual, self.naive_forecast, prefix="naive_")
        metrics.update(naive)
        metrics[METRIC_TEST_RMSE_VS_NAIVE] = metrics[METRIC_TEST_RMSE] / naive[METRIC_NAIVE_TEST_RMSE]
        return metrics


class EpochMetricsLogger(keras.callbacks.Callback):
    """Logs each epoch's training loss to the active MLflow run (step = epoch)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs and "loss" in logs:
            mlflow.log_metric(METRIC_TRAIN_LOSS, float(logs["loss"]), step=epoch)


def train_and_evaluate(
    prices: pd.DataFrame, params: TrainParams, callbacks: list[keras.callbacks.Callback] | None = None
) -> TrainResult:
    """Chronological split, scaler fit on training data only, LSTM fit, one-step test forecasts."""
    closes = prices[PRICE_COLUMN].to_numpy(dtype=float)
    check_enough_rows(len(closes), params.window, params.test_fraction)
    n_test = holdout_size(len(closes), params.test_fraction)
    windows, targets = make_windows(closes, params.window)  # sample i forecasts row i + window
    first_test = len(closes) - n_test - params.window
    train_windows, train_targets = windows[:first_test], targets[:first_test]
    test_windows = windows[first_test:]

    scaler = ReturnScaler.fit(next_log_returns(train_windows, train_targets))
    x_train = model_inputs(train_windows, scaler)
    y_train = scaler.transform(next_log_returns(train_windows, train_targets))

    keras.utils.set_random_seed(params.seed)
    tf.config.experimental.enable_op_determinism()
    model = build_lstm(params.window, params.lstm_units)
    started = time.perf_counter()
    model.fit(
        x_train,
        y_train,
        epochs=params.epochs,
        batch_size=params.batch_size,
        shuffle=True,  # windows are independent samples: shuffling them leaks nothing from the test days
        callbacks=callbacks or [],
        verbose=0,
    )
    train_seconds = time.perf_counter() - started
    return TrainResult(
        keras_model=model,
        scaler=scaler,
        test_dates=prices[DATE_COLUMN].iloc[-n_test:].reset_index(drop=True),
        actual=closes[-n_test:],
        lstm_forecast=predict_next_closes(model, test_windows, scaler),
        naive_forecast=naive_forecast(closes, n_test),
        n_train_samples=len(train_windows),
        train_seconds=train_seconds,
    )


def log_model(result: TrainResult, prices: pd.DataFrame, window: int) -> None:
    """Log the pyfunc model as code, with its Keras weights, config, signature and input example."""
    input_example = prices[[PRICE_COLUMN]].iloc[-window:].reset_index(drop=True)
    example_output = pd.DataFrame(
        {
            OUTPUT_COLUMN: predict_next_closes(
                result.keras_model, input_example[PRICE_COLUMN].to_numpy()[None, :], result.scaler
            )
        }
    )
    with tempfile.TemporaryDirectory() as folder:
        keras_path = Path(folder) / "lstm.keras"
        result.keras_model.save(keras_path)
        code_dir = _copy_package_sources(Path(folder) / "code")
        mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(code_dir / PACKAGE_DIR.name / "pyfunc_model.py"),
            model_config={WINDOW_CONFIG: window, RETURN_SCALE_CONFIG: result.scaler.scale},
            artifacts={KERAS_ARTIFACT: str(keras_path)},
            code_paths=[str(code_dir / PACKAGE_DIR.name)],
            signature=infer_signature(input_example, example_output),
            input_example=input_example,
            pip_requirements=[f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS],
        )


def train(stock_data: str, params: TrainParams) -> None:
    """Read prepared prices, train, evaluate and log metrics, forecasts and the model."""
    params.check()
    path = Path(stock_data)
    if not path.is_file():
        raise SourceError(f"stock_data '{stock_data}' is not a file")
    prices = validate_prepared(pd.read_csv(path, dtype=str), path.name)
    result = train_and_evaluate(prices, params, callbacks=[EpochMetricsLogger()])
    metrics = result.metrics()
    mlflow.log_metrics(
        {
            **metrics,
            "n_train_samples": result.n_train_samples,
            "n_test_days": len(result.actual),
            "train_seconds": result.train_seconds,
        }
    )
    mlflow.log_text(_predictions_frame(result).to_csv(index=False, date_format="%Y-%m-%d"), PREDICTIONS_PATH)
    log_model(result, prices, params.window)
    logger.info(
        "LSTM test RMSE %.4f, naive %.4f (ratio %.3f) over %d test days",
        metrics[METRIC_TEST_RMSE],
        metrics[METRIC_NAIVE_TEST_RMSE],
        metrics[METRIC_TEST_RMSE_VS_NAIVE],
        len(result.actual),
    )


def _predictions_frame(result: TrainResult) -> pd.DataFrame:
    return pd.DataFrame(
        {
            DATE_COLUMN: result.test_dates,
            "actual": result.actual,
            "lstm": result.lstm_forecast,
            "naive": result.naive_forecast,
        }
    )


def _copy_package_sources(target: Path) -> Path:
    """Copy flow_steps' Python files (not the sample data) so the logged model is self-contained."""
    shutil.copytree(
        PACKAGE_DIR, target / PACKAGE_DIR.name, ignore=shutil.ignore_patterns("__pycache__", "sample_data")
    )
    return target


@click.command(
    help="Train a two-layer Keras LSTM on prepared prices (Date, Close), evaluate it on the last "
    "test_fraction of days next to the naive 'tomorrow = today' forecast, and log the metrics, "
    f"{PREDICTIONS_PATH} and the pyfunc model '{MODEL_NAME}'."
)
@click.option(
    "--stock-data",
    required=True,
    type=click.Path(dir_okay=False),
    help="Prepared prices CSV (transform_data's artifact transformed-data/prices.csv).",
)
@with_options(TRAIN_OPTIONS)
def cli(stock_data: str, **options: int | float) -> None:
    params = TrainParams(**options)
    run_step(TRAIN_STEP, {"stock_data": stock_data, **options}, lambda: train(stock_data, params))


if __name__ == "__main__":
    cli()
