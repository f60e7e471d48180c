"""Step 3: train the LSTM on prepared prices, evaluate it next to simple baselines, log the model."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import click
import keras
import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from flow_steps.config.entry_points import options
from flow_steps.config.names import (
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
    TAG_STOCK_DATA_SHA256,
    TRAIN_STEP,
)
from flow_steps.config.values import TrainParams, check_train_params
from flow_steps.data.reading import sha256_bytes
from flow_steps.model.features import check_enough_rows, holdout_size
from flow_steps.model.intervals import INTERVAL_COLUMNS, lower_column, upper_column
from flow_steps.model.pyfunc import KERAS_ARTIFACT, RETURN_SCALE_CONFIG, WINDOW_CONFIG, multiplier_config
from flow_steps.runtime.inputs import log_prices_input, read_prepared
from flow_steps.runtime.interruption import interruptions_held
from flow_steps.runtime.lifecycle import local_input, run_step
from flow_steps.training.evaluation import LSTM, NAIVE, backtest_ranges, backtest_summary
from flow_steps.training.lstm import (
    FittedLstm,
    SplitEvaluation,
    evaluate_split,
    limit_threads_from_environment,
    walk_forward,
)
from flow_steps.training.plots import forecast_figure

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
# What the logged model ships, as paths in the package: the model/ folder and the two modules of names
# and errors it imports. tests/unit/test_structure.py checks that serving imports nothing else of ours.
SERVED_CODE = ("__init__.py", "config/__init__.py", "config/names.py", "config/errors.py", "model")


def served_code_files() -> list[str]:
    """SERVED_CODE with its folder expanded: the package's files the logged model ships."""
    files = []
    for name in SERVED_CODE:
        path = PACKAGE_DIR / name
        found = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        files += [
            item.relative_to(PACKAGE_DIR).as_posix() for item in found if "__pycache__" not in item.parts
        ]
    return files


# What serving imports; TensorFlow is whichever build is installed (tensorflow-cpu here, tensorflow on GPUs).
MODEL_REQUIREMENTS = ("mlflow", ("tensorflow-cpu", "tensorflow"), "keras", "numpy", "pandas", "cloudpickle")


class EpochMetricsLogger(keras.callbacks.Callback):
    """Logs each epoch's training and validation loss to the active MLflow run (step = epoch).

    Asynchronously: training never waits on the tracking server; MLflow sends the queued metrics in the
    background (riding out an outage) and before the run ends."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        metrics = {
            name: float(logs[key])
            for key, name in (("loss", METRIC_TRAIN_LOSS), ("val_loss", METRIC_VAL_LOSS))
            if key in logs
        }
        if metrics:
            mlflow.log_metrics(metrics, step=epoch, synchronous=False)


def installed_pin(names: str | tuple[str, ...]) -> str:
    """`name==version` of the first of `names` that is installed."""
    for name in (names,) if isinstance(names, str) else names:
        try:
            return f"{name}=={version(name)}"
        except PackageNotFoundError:
            continue
    raise PackageNotFoundError(f"none of {names} is installed")


def model_signature() -> ModelSignature:
    """Chronological closes in; one row per trading day ahead out (forecast and interval bounds);
    `horizon` (default 1) as a parameter."""
    outputs = [ColSpec("long", DAYS_AHEAD_COLUMN), ColSpec("double", FORECAST_COLUMN)]
    return ModelSignature(
        inputs=Schema([ColSpec("double", PRICE_COLUMN)]),
        outputs=Schema([*outputs, *(ColSpec("double", column) for column in INTERVAL_COLUMNS)]),
        params=ParamSchema([ParamSpec(HORIZON_PARAM, "long", 1)]),
    )


def log_model(lstm: FittedLstm, multipliers: dict[int, float], prices: pd.DataFrame, window: int) -> str:
    """Log the pyfunc model as code, with its Keras weights, config (window, return scale, calibrated
    interval multipliers), signature and input example.

    Returns the logged model's id (MLflow 3 logged models carry their own metrics).
    """
    input_example = prices[[PRICE_COLUMN]].iloc[-window:].reset_index(drop=True)
    with tempfile.TemporaryDirectory() as folder:
        keras_path = Path(folder) / "lstm.keras"
        lstm.keras_model.save(keras_path)
        code_dir = Path(folder) / "code" / PACKAGE_DIR.name
        for name in served_code_files():
            (code_dir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PACKAGE_DIR / name, code_dir / name)
        logged = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(code_dir / "model" / "from_code.py"),
            model_config={
                WINDOW_CONFIG: window,
                RETURN_SCALE_CONFIG: lstm.scaler.scale,
                **{multiplier_config(level): value for level, value in multipliers.items()},
            },
            artifacts={KERAS_ARTIFACT: str(keras_path)},
            code_paths=[str(code_dir)],
            signature=model_signature(),
            input_example=input_example,
            pip_requirements=[installed_pin(name) for name in MODEL_REQUIREMENTS],
        )
    return logged.model_id


def train(stock_data: str, params: TrainParams) -> None:
    """Read prepared prices, train, evaluate against the baselines, log metrics, artifacts and model."""
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
    model_id = log_model(split.lstm, split.multipliers, prices, params.window)
    mlflow.log_metrics(split.metrics, model_id=model_id)  # the scores, on the run and on its model
    logger.info(
        "LSTM test RMSE %.4f, naive %.4f (ratio %.3f) over %d test days; 80%% interval covered %.1f%%, "
        "95%% covered %.1f%%\n%s",
        split.metrics[METRIC_TEST_RMSE],
        split.metrics[METRIC_NAIVE_TEST_RMSE],
        split.metrics[METRIC_TEST_RMSE_VS_NAIVE],
        len(split.actual),
        100 * split.metrics["test_coverage_80"],
        100 * split.metrics["test_coverage_95"],
        split.table.to_string(index=False, float_format=lambda value: f"{value:.4f}"),
    )


def train_holding_interruptions(stock_data: str, params: TrainParams) -> None:
    """`train`, with SIGINT/SIGTERM raised between training batches rather than inside TensorFlow."""
    with interruptions_held():
        train(stock_data, params)


def _log_split_artifacts(split: SplitEvaluation, prices: pd.DataFrame) -> None:
    bounds = {
        column(level): getattr(interval, side)
        for level, interval in split.intervals[LSTM].items()
        for column, side in ((lower_column, "lower"), (upper_column, "upper"))
    }
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


def _log_backtest(folds: list[SplitEvaluation]) -> None:
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


@click.command(
    help="Train a two-layer Keras LSTM on prepared prices (Date, Close) with early stopping on a "
    "validation slice, evaluate it on the last test_fraction of days next to the naive, moving-average, "
    f"linear-regression and kNN forecasts, and log the metrics, {METRICS_TABLE_PATH}, "
    f"{FORECAST_PLOT_PATH}, {PREDICTIONS_PATH} and the pyfunc model '{MODEL_NAME}'."
)
@options(TRAIN_STEP)
def cli(stock_data: str, **values: int | float) -> None:
    params = TrainParams(**values)
    run_step(
        TRAIN_STEP,
        {"stock_data": stock_data, **dataclasses.asdict(params)},
        lambda: train_holding_interruptions(local_input(stock_data), params),
        output=lambda: f"runs:/{mlflow.active_run().info.run_id}/{MODEL_NAME}",
    )


if __name__ == "__main__":
    cli()
