"""Step 3: train the LSTM on prepared prices, evaluate it next to simple baselines, log the model."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import click
import keras
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from flow_steps.constants import (
    BACKTEST_PATH,
    DATE_COLUMN,
    DAYS_AHEAD_COLUMN,
    FORECAST_COLUMN,
    FORECAST_PLOT_PATH,
    HORIZON_PARAM,
    METRIC_NAIVE_TEST_RMSE,
    METRIC_TEST_RMSE,
    METRIC_TEST_RMSE_VS_NAIVE,
    METRIC_TRAIN_LOSS,
    METRIC_VAL_LOSS,
    METRICS_TABLE_PATH,
    MODEL_NAME,
    PREDICTIONS_PATH,
    PRICE_COLUMN,
    TRAIN_STEP,
)
from flow_steps.errors import PipelineError, SourceError
from flow_steps.evaluation import LSTM, NAIVE, baseline_forecasts, comparison, metrics_by_name
from flow_steps.model import (
    KERAS_ARTIFACT,
    RETURN_SCALE_CONFIG,
    WINDOW_CONFIG,
    FittedLstm,
    fit_lstm,
    predict_next_closes,
)
from flow_steps.options import TRAIN_OPTIONS, with_options
from flow_steps.plots import forecast_figure
from flow_steps.preparation import (
    MIN_TEST_ROWS,
    check_enough_rows,
    holdout_size,
    make_windows,
    validate_prepared,
)
from flow_steps.step_run import run_step

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
MODEL_REQUIREMENTS = (
    "mlflow",
    "tensorflow",
    "keras",
    "numpy",
    "pandas",
    "cloudpickle",
)  # what serving imports


@dataclass(frozen=True)
class TrainParams:
    """Parameters of train_model (names and defaults as in MLproject)."""

    lstm_units: int = 50
    window: int = 60
    epochs: int = 50
    batch_size: int = 32
    test_fraction: float = 0.2
    seed: int = 42
    validation_fraction: float = 0.1
    patience: int = 5
    ma_window: int = 5
    knn_neighbors: int = 20
    backtest_folds: int = 0

    def check(self) -> None:
        """Refuse out-of-range values before any work starts."""
        for name in (
            "lstm_units",
            "window",
            "epochs",
            "batch_size",
            "patience",
            "ma_window",
            "knn_neighbors",
        ):
            if getattr(self, name) < 1:
                raise PipelineError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.test_fraction <= 0.5:
            raise PipelineError(f"test_fraction must be in (0, 0.5], got {self.test_fraction}")
        if not 0 < self.validation_fraction < 0.5:
            raise PipelineError(f"validation_fraction must be in (0, 0.5), got {self.validation_fraction}")
        if self.backtest_folds < 0:
            raise PipelineError(f"backtest_folds must be 0 (single split) or more, got {self.backtest_folds}")
        if self.ma_window > self.window:
            raise PipelineError(f"ma_window ({self.ma_window}) must not exceed window ({self.window})")


@dataclass
class SplitEvaluation:
    """The LSTM and the baselines fitted before, and scored on, one block of test days."""

    lstm: FittedLstm
    dates: pd.Series
    actual: np.ndarray
    forecasts: dict[str, np.ndarray]  # model name -> forecast of each test day
    table: pd.DataFrame  # one row per model, every metric
    metrics: dict[str, float]  # the table as MLflow metric names


class EpochMetricsLogger(keras.callbacks.Callback):
    """Logs each epoch's training and validation loss to the active MLflow run (step = epoch)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        for key, name in (("loss", METRIC_TRAIN_LOSS), ("val_loss", METRIC_VAL_LOSS)):
            if key in logs:
                mlflow.log_metric(name, float(logs[key]), step=epoch)


def evaluate_split(
    prices: pd.DataFrame,
    n_test: int,
    params: TrainParams,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> SplitEvaluation:
    """Fit the LSTM and the baselines on all rows but the last `n_test`, forecast those one step ahead."""
    closes = prices[PRICE_COLUMN].to_numpy(dtype=float)
    lstm = fit_lstm(
        closes[:-n_test],
        window=params.window,
        units=params.lstm_units,
        epochs=params.epochs,
        batch_size=params.batch_size,
        validation_fraction=params.validation_fraction,
        patience=params.patience,
        seed=params.seed,
        callbacks=callbacks,
    )
    windows, _ = make_windows(closes, params.window)
    forecasts = {
        LSTM: predict_next_closes(lstm.keras_model, windows[-n_test:], lstm.scaler),
        **baseline_forecasts(closes, n_test, params.window, params.ma_window, params.knn_neighbors),
    }
    table = comparison(closes, forecasts)
    return SplitEvaluation(
        lstm=lstm,
        dates=prices[DATE_COLUMN].iloc[-n_test:].reset_index(drop=True),
        actual=closes[-n_test:],
        forecasts=forecasts,
        table=table,
        metrics=metrics_by_name(table, closes[-n_test - 1 : -1], closes[-n_test:]),
    )


def backtest_folds(n_rows: int, n_test: int, folds: int) -> list[tuple[int, int]]:
    """Cut the test period (the last `n_test` rows) into `folds` consecutive (start, end) row ranges."""
    if folds > n_test // MIN_TEST_ROWS:
        raise PipelineError(
            f"backtest_folds={folds} would leave fewer than {MIN_TEST_ROWS} test days per fold "
            f"({n_test} test days): lower backtest_folds or raise test_fraction"
        )
    blocks = np.array_split(np.arange(n_rows - n_test, n_rows), folds)
    return [(int(block[0]), int(block[-1]) + 1) for block in blocks]


def walk_forward(prices: pd.DataFrame, params: TrainParams) -> list[SplitEvaluation]:
    """Refit on all rows before each fold of the test period and score on that fold."""
    n_test = holdout_size(len(prices), params.test_fraction)
    return [
        evaluate_split(prices.iloc[:end], end - start, params)
        for start, end in backtest_folds(len(prices), n_test, params.backtest_folds)
    ]


def backtest_summary(folds: list[SplitEvaluation]) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-fold rows (fold, model, metrics) and the mean of every metric over folds, as `backtest_*`."""
    table = pd.concat([fold.table.assign(fold=index) for index, fold in enumerate(folds)], ignore_index=True)[
        ["fold", *folds[0].table.columns]
    ]
    names = folds[0].metrics.keys()
    means = {f"backtest_{name}": float(np.mean([fold.metrics[name] for fold in folds])) for name in names}
    return table, means


def model_signature() -> ModelSignature:
    """Chronological closes in; one row per business day ahead out; `horizon` (default 1) as a parameter."""
    return ModelSignature(
        inputs=Schema([ColSpec("double", PRICE_COLUMN)]),
        outputs=Schema([ColSpec("long", DAYS_AHEAD_COLUMN), ColSpec("double", FORECAST_COLUMN)]),
        params=ParamSchema([ParamSpec(HORIZON_PARAM, "long", 1)]),
    )


def log_model(lstm: FittedLstm, prices: pd.DataFrame, window: int) -> None:
    """Log the pyfunc model as code, with its Keras weights, config, signature and input example."""
    input_example = prices[[PRICE_COLUMN]].iloc[-window:].reset_index(drop=True)
    with tempfile.TemporaryDirectory() as folder:
        keras_path = Path(folder) / "lstm.keras"
        lstm.keras_model.save(keras_path)
        code_dir = _copy_package_sources(Path(folder) / "code")
        mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(code_dir / PACKAGE_DIR.name / "pyfunc_model.py"),
            model_config={WINDOW_CONFIG: window, RETURN_SCALE_CONFIG: lstm.scaler.scale},
            artifacts={KERAS_ARTIFACT: str(keras_path)},
            code_paths=[str(code_dir / PACKAGE_DIR.name)],
            signature=model_signature(),
            input_example=input_example,
            pip_requirements=[f"{name}=={version(name)}" for name in MODEL_REQUIREMENTS],
        )


def train(stock_data: str, params: TrainParams) -> None:
    """Read prepared prices, train, evaluate against the baselines, log metrics, artifacts and model."""
    params.check()
    path = Path(stock_data)
    if not path.is_file():
        raise SourceError(f"stock_data '{stock_data}' is not a file")
    prices = validate_prepared(pd.read_csv(path, dtype=str), path.name)
    check_enough_rows(len(prices), params.window, params.test_fraction)
    n_test = holdout_size(len(prices), params.test_fraction)
    if params.backtest_folds:
        backtest_folds(len(prices), n_test, params.backtest_folds)  # refuse bad folds before training

    split = evaluate_split(prices, n_test, params, callbacks=[EpochMetricsLogger()])
    mlflow.log_metrics(
        {
            **split.metrics,
            "best_epoch": split.lstm.best_epoch,
            "epochs_trained": len(split.lstm.history["loss"]),
            "n_fit_samples": split.lstm.n_fit_samples,
            "n_validation_samples": split.lstm.n_validation_samples,
            "n_test_days": len(split.actual),
            "train_seconds": split.lstm.train_seconds,
        }
    )
    _log_split_artifacts(split, prices)
    if params.backtest_folds:
        _log_backtest(walk_forward(prices, params))
    log_model(split.lstm, prices, params.window)
    logger.info(
        "LSTM test RMSE %.4f, naive %.4f (ratio %.3f) over %d test days\n%s",
        split.metrics[METRIC_TEST_RMSE],
        split.metrics[METRIC_NAIVE_TEST_RMSE],
        split.metrics[METRIC_TEST_RMSE_VS_NAIVE],
        len(split.actual),
        split.table.to_string(index=False, float_format=lambda value: f"{value:.4f}"),
    )


def _log_split_artifacts(split: SplitEvaluation, prices: pd.DataFrame) -> None:
    predictions = pd.DataFrame({DATE_COLUMN: split.dates, "actual": split.actual, **split.forecasts})
    mlflow.log_text(predictions.to_csv(index=False, date_format="%Y-%m-%d"), PREDICTIONS_PATH)
    mlflow.log_text(split.table.to_csv(index=False), METRICS_TABLE_PATH)
    n_test = len(split.dates)
    first, last_training = prices[DATE_COLUMN].iloc[0].date(), prices[DATE_COLUMN].iloc[-n_test - 1].date()
    figure = forecast_figure(
        split.dates,
        split.actual,
        {"LSTM": split.forecasts[LSTM], "naive": split.forecasts[NAIVE]},
        title=f"One-day-ahead forecasts of {n_test} test days, trained on {first} .. {last_training}: "
        f"LSTM RMSE / naive RMSE = {split.metrics[METRIC_TEST_RMSE_VS_NAIVE]:.3f}",
    )
    mlflow.log_figure(figure, FORECAST_PLOT_PATH)


def _log_backtest(folds: list[SplitEvaluation]) -> None:
    table, means = backtest_summary(folds)
    for index, fold in enumerate(folds):
        mlflow.log_metrics({f"fold_{name}": value for name, value in fold.metrics.items()}, step=index)
    mlflow.log_metrics(means)
    mlflow.log_text(table.to_csv(index=False), BACKTEST_PATH)
    logger.info(
        "Walk-forward backtest over %d folds: mean LSTM RMSE / naive RMSE %.3f",
        len(folds),
        means[f"backtest_{METRIC_TEST_RMSE_VS_NAIVE}"],
    )


def _copy_package_sources(target: Path) -> Path:
    """Copy flow_steps' Python files (not the sample data) so the logged model is self-contained."""
    shutil.copytree(
        PACKAGE_DIR, target / PACKAGE_DIR.name, ignore=shutil.ignore_patterns("__pycache__", "sample_data")
    )
    return target


@click.command(
    help="Train a two-layer Keras LSTM on prepared prices (Date, Close) with early stopping on a "
    "validation slice, evaluate it on the last test_fraction of days next to the naive, moving-average, "
    f"linear-regression and kNN forecasts, and log the metrics, {METRICS_TABLE_PATH}, "
    f"{FORECAST_PLOT_PATH}, {PREDICTIONS_PATH} and the pyfunc model '{MODEL_NAME}'."
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
    run_step(TRAIN_STEP, {"stock_data": stock_data, **asdict(params)}, lambda: train(stock_data, params))


if __name__ == "__main__":
    cli()
