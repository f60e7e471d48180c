"""Step 3: train the LSTM on prepared prices, evaluate it next to the baselines and the statistical
peers on the same test days, and log the served model (deployment/packaging.py)."""

from __future__ import annotations

import dataclasses
import logging

import click
import mlflow

from flow_steps.config.entry_points import options
from flow_steps.config.names import (
    DATE_COLUMN,
    FORECAST_PLOT_PATH,
    METRIC_NAIVE_TEST_RMSE,
    METRIC_TEST_COVERAGE_80,
    METRIC_TEST_COVERAGE_95,
    METRIC_TEST_RMSE,
    METRIC_TEST_RMSE_VS_NAIVE,
    METRICS_TABLE_PATH,
    MODEL_ARTIFACT,
    PREDICTIONS_PATH,
    TRAIN_STEP,
)
from flow_steps.config.values import TrainParams
from flow_steps.deployment.packaging import log_model
from flow_steps.runtime.inputs import local_input
from flow_steps.runtime.interruption import interruptions_held
from flow_steps.runtime.lifecycle import run_step
from flow_steps.training.recording import fit_and_record

logger = logging.getLogger(__name__)


def train(stock_data: str, params: TrainParams) -> None:
    """Fit, evaluate and record (training/recording.py), then log the model with its scores."""
    prices, split = fit_and_record(stock_data, params)
    last_training_date = prices[DATE_COLUMN].iloc[-len(split.actual) - 1]
    model_id = log_model(
        split.lstm, split.multipliers, prices, params.window, split.scores, f"{last_training_date:%Y-%m-%d}"
    )
    mlflow.log_metrics(split.metrics, model_id=model_id)  # the scores, on the run and on its model
    logger.info(
        "LSTM test RMSE %.4f, naive %.4f (ratio %.3f) over %d test days; 80%% interval covered %.1f%%, "
        "95%% covered %.1f%%\n%s",
        split.metrics[METRIC_TEST_RMSE],
        split.metrics[METRIC_NAIVE_TEST_RMSE],
        split.metrics[METRIC_TEST_RMSE_VS_NAIVE],
        len(split.actual),
        100 * split.metrics[METRIC_TEST_COVERAGE_80],
        100 * split.metrics[METRIC_TEST_COVERAGE_95],
        split.table.to_string(index=False, float_format=lambda value: f"{value:.4f}"),
    )


def train_holding_interruptions(stock_data: str, params: TrainParams) -> None:
    """`train`, with SIGINT/SIGTERM raised between training batches rather than inside TensorFlow."""
    with interruptions_held():
        train(stock_data, params)


@click.command(
    help="Train a two-layer Keras LSTM on prepared prices (Date, Close) with early stopping on a "
    "validation slice, evaluate it on the last test_fraction of days next to the naive, moving-average, "
    f"linear-regression and kNN forecasts, and log the metrics, {METRICS_TABLE_PATH}, "
    f"{FORECAST_PLOT_PATH}, {PREDICTIONS_PATH} and the pyfunc model '{MODEL_ARTIFACT}'."
)
@options(TRAIN_STEP)
def cli(stock_data: str, **values: int | float) -> None:
    params = TrainParams(**values)
    run_step(
        TRAIN_STEP,
        {"stock_data": stock_data, **dataclasses.asdict(params)},
        lambda: train_holding_interruptions(local_input(stock_data), params),
        output=lambda: f"runs:/{mlflow.active_run().info.run_id}/{MODEL_ARTIFACT}",
    )


if __name__ == "__main__":
    cli()
