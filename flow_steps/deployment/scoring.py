"""Scoring a registered model on a training run's test days: from the training run when it was tested on
exactly these days, else by loading the model (a TensorFlow start-up)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Run

from flow_steps.config.names import (
    DATE_COLUMN,
    METRIC_N_TEST_DAYS,
    METRIC_TEST_RMSE,
    PRICE_COLUMN,
    SCORED_FROM_TRAINING,
    SCORED_HERE,
    TAG_STOCK_DATA_SHA256,
)
from flow_steps.model.features import holdout_size
from flow_steps.runtime.interruption import interruptions_held
from flow_steps.training.evaluation import rmse

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HoldoutDays:
    """The closes a model is scored on: every close, how many of the last ones are test days, and the
    SHA-256 of the prepared prices file they came from ("" when unknown)."""

    closes: np.ndarray
    dates: pd.Series
    n_test: int
    prices_sha256: str = ""

    @property
    def actual(self) -> np.ndarray:
        return self.closes[-self.n_test :]


def holdout_days(prices: pd.DataFrame, test_fraction: float, prices_sha256: str = "") -> HoldoutDays:
    """The test days train_model held out from `prices` with `test_fraction`."""
    return HoldoutDays(
        closes=prices[PRICE_COLUMN].to_numpy(dtype=float),
        dates=prices[DATE_COLUMN],
        n_test=holdout_size(len(prices), test_fraction),
        prices_sha256=prices_sha256,
    )


def score(model_uri: str, days: HoldoutDays) -> float:
    """RMSE of a registered LSTM's one-step forecasts of the test days (loaded like serving does)."""
    with interruptions_held():  # a signal stops it after TensorFlow's work, never inside it
        forecaster = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
        return rmse(days.actual, forecaster.one_step_forecasts(days.closes, days.n_test))


def score_from_training(train: Run, days: HoldoutDays) -> float | None:
    """The test RMSE `train` logged, if it was tested on exactly these days; else None."""
    tags, metrics = train.data.tags, train.data.metrics
    same_days = (
        bool(days.prices_sha256)
        and tags.get(TAG_STOCK_DATA_SHA256) == days.prices_sha256
        and metrics.get(METRIC_N_TEST_DAYS) == days.n_test
    )
    return metrics.get(METRIC_TEST_RMSE) if same_days else None


def model_score(model_uri: str, train: Run, days: HoldoutDays) -> tuple[float, str]:
    """A model's RMSE on the test days and where it came from (its training run, or scored here)."""
    logged = score_from_training(train, days)
    if logged is not None:
        return logged, SCORED_FROM_TRAINING
    return score(model_uri, days), SCORED_HERE


def day_text(value: pd.Timestamp) -> str:
    """A day as the registry writes it: YYYY-MM-DD."""
    return pd.Timestamp(value).strftime("%Y-%m-%d")
