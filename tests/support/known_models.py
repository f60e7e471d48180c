"""Models whose test RMSE is known by construction, logged as train_model logs models and registered.

Each forecasts `last close * exp(c * RETURN_SCALE)` for every window, whatever it is given: c = 0 is
exactly the naive forecast; c = 0.5 (a 1% rise every day) is clearly worse on real prices, and has a
real edge on prices that do rise about 1% a day; c = 0.01 (0.02% a day) is the naive forecast nudged.
The registry's gating can then be asserted exactly, whatever training numerics do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from click.testing import CliRunner
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from flow_steps import register_model, train_model
from flow_steps.config.names import PREDICTIONS_PATH, REGISTER_STEP, TAG_STOCK_DATA_SHA256, TRAIN_STEP
from flow_steps.data.reading import sha256_bytes
from flow_steps.deployment.scoring import holdout_days
from flow_steps.model.features import ReturnScaler
from flow_steps.model.intervals import ewma_volatility, scaled_intervals
from flow_steps.runtime.inputs import read_prepared
from flow_steps.runtime.lineage import code_version
from flow_steps.training.evaluation import rmse
from flow_steps.training.lstm import FittedLstm
from flow_steps.training.network import build_lstm

WINDOW = 10
RETURN_SCALE = 0.02
WORSE, BETTER, NUDGED = 0.5, 0.0, 0.01
MULTIPLIERS = {80: 1.28, 95: 1.96}  # interval multipliers of volatility (the normal quantiles)
NARROW = {80: 0.1, 95: 0.2}  # intervals far too narrow: they miss most days


@dataclass
class Registration:
    train: Run
    register: Run
    expected_rmse: float

    @property
    def decision(self) -> str:
        return self.register.data.tags["promotion"]


def constant_return_model(scaled_return: float) -> FittedLstm:
    """An LSTM whose output layer ignores its input and always answers `scaled_return`."""
    keras_model = build_lstm(WINDOW, units=2)
    kernel, bias = keras_model.layers[-1].get_weights()
    keras_model.layers[-1].set_weights([np.zeros_like(kernel), np.full_like(bias, scaled_return)])
    return FittedLstm(keras_model, ReturnScaler(RETURN_SCALE), {}, 0, 0, 0, 0.0)


def log_known_model(
    stock_data: str,
    scaled_return: float,
    as_trained: bool = False,
    multipliers: dict[int, float] = MULTIPLIERS,
) -> tuple[str, float]:
    """A train_model run (in the active experiment) with a constant-return model; its id and test RMSE.

    With `as_trained`, the run also records what train_model records about its test days (the prices'
    SHA-256, their number, the test predictions with their intervals), so register_model takes the
    daily losses from it instead of loading the model.
    """
    prices = read_prepared(stock_data, "stock_data")
    days = holdout_days(prices, 0.2)
    previous = days.closes[-days.n_test - 1 : -1]
    forecast = previous * np.exp(scaled_return * RETURN_SCALE)
    expected = rmse(days.actual, forecast)
    with mlflow.start_run(run_name=TRAIN_STEP) as run:
        mlflow.set_tag("code_version", code_version())
        mlflow.log_params({"stock_data": stock_data, "window": WINDOW, "test_fraction": 0.2})
        model_id = train_model.log_model(constant_return_model(scaled_return), multipliers, prices, WINDOW)
        scores = {"test_rmse": expected, "naive_test_rmse": rmse(days.actual, previous)}
        mlflow.log_metrics(scores, model_id=model_id)  # as train_model logs them: on the run and its model
        if as_trained:
            mlflow.set_tag(TAG_STOCK_DATA_SHA256, sha256_bytes(Path(stock_data).read_bytes()))
            mlflow.log_metric("n_test_days", days.n_test)
            sigma = ewma_volatility(days.closes)[len(days.closes) - days.n_test :][: days.n_test]
            intervals = scaled_intervals(forecast, sigma, multipliers)
            table = pd.DataFrame(
                {"Date": days.dates.iloc[-days.n_test :], "actual": days.actual, "lstm": forecast}
            )
            for level, interval in intervals.items():
                table[f"lstm_lower_{level}"], table[f"lstm_upper_{level}"] = interval.lower, interval.upper
            mlflow.log_text(table.to_csv(index=False, date_format="%Y-%m-%d"), PREDICTIONS_PATH)
    return run.info.run_id, expected


def newest_register_run(client: MlflowClient, experiment_id: str) -> Run:
    newest_first = ["start_time DESC"]
    query = f"attributes.run_name = '{REGISTER_STEP}'"
    [run] = client.search_runs([experiment_id], query, max_results=1, order_by=newest_first)
    return run


def register(
    client: MlflowClient,
    stock_data: str,
    scaled_return: float,
    model_name: str,
    as_trained: bool = False,
    multipliers: dict[int, float] = MULTIPLIERS,
    *options: str,
) -> Registration:
    """Log a model of known RMSE, then run register_model on it (click, in this process; `options`:
    more of its command-line options)."""
    run_id, expected = log_known_model(stock_data, scaled_return, as_trained, multipliers)
    arguments = ["--model-uri", f"runs:/{run_id}/model", "--stock-data", stock_data]
    arguments += ["--model-name", model_name, *options]
    result = CliRunner().invoke(register_model.cli, arguments)
    assert result.exit_code == 0, result.output
    experiment_id = client.get_run(run_id).info.experiment_id
    return Registration(client.get_run(run_id), newest_register_run(client, experiment_id), expected)
