"""Scoring a registered model on a training run's test days, day by day: its squared errors and its 80%
interval's scores, from the training run's predictions when it was tested on exactly these days, else by
loading the model (a TensorFlow start-up). Promotion compares two models' daily losses on the same days."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from flow_steps.config.names import (
    DATE_COLUMN,
    METRIC_N_TEST_DAYS,
    PREDICTIONS_PATH,
    PRICE_COLUMN,
    SCORED_FROM_TRAINING,
    SCORED_HERE,
    TAG_STOCK_DATA_SHA256,
)
from flow_steps.model.features import holdout_size
from flow_steps.model.intervals import Interval, ewma_volatility, interval_score, scaled_intervals
from flow_steps.runtime.interruption import interruptions_held
from flow_steps.training.evaluation import LSTM

INTERVAL_LEVEL = 80  # the interval whose score promotion compares

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


@dataclass(frozen=True)
class DailyLosses:
    """A model's losses on each test day: its squared error, and its 80% interval's score (Winkler;
    None for a forecast without an interval, such as the naive one)."""

    squared_error: np.ndarray
    interval_score: np.ndarray | None = None

    @property
    def rmse(self) -> float:
        return float(np.sqrt(np.mean(self.squared_error)))


def daily_losses(actual: np.ndarray, forecast: np.ndarray, interval: Interval | None = None) -> DailyLosses:
    """The squared error of each day and, with an interval, its interval score (model/intervals.py)."""
    actual, forecast = np.asarray(actual, dtype=float), np.asarray(forecast, dtype=float)
    scores = None
    if interval is not None:
        scores = np.array(
            [
                interval_score(
                    actual[day : day + 1],
                    Interval(interval.lower[day : day + 1], interval.upper[day : day + 1]),
                    INTERVAL_LEVEL,
                )
                for day in range(len(actual))
            ]
        )
    return DailyLosses((actual - forecast) ** 2, scores)


def naive_losses(days: HoldoutDays) -> DailyLosses:
    """The naive forecast's (tomorrow = today) squared errors on the test days."""
    return daily_losses(days.actual, days.closes[-days.n_test - 1 : -1])


def score(model_uri: str, days: HoldoutDays) -> DailyLosses:
    """A registered LSTM's one-step forecasts of the test days and their 80% intervals (loaded like serving
    does; the intervals scale its multiplier by the volatility of the closes before each day)."""
    with interruptions_held():  # a signal stops it after TensorFlow's work, never inside it
        forecaster = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
        forecast = forecaster.one_step_forecasts(days.closes, days.n_test)
    interval = None
    if INTERVAL_LEVEL in forecaster.multipliers:
        sigma = ewma_volatility(days.closes)[len(days.closes) - days.n_test : len(days.closes)]
        interval = scaled_intervals(forecast, sigma, {INTERVAL_LEVEL: forecaster.multipliers[INTERVAL_LEVEL]})
        interval = interval[INTERVAL_LEVEL]
    return daily_losses(days.actual, forecast, interval)


def same_test_days(train: Run, days: HoldoutDays) -> bool:
    """True when `train` was tested on exactly these days: the same prepared prices and number of days."""
    tags, metrics = train.data.tags, train.data.metrics
    return (
        bool(days.prices_sha256)
        and tags.get(TAG_STOCK_DATA_SHA256) == days.prices_sha256
        and metrics.get(METRIC_N_TEST_DAYS) == days.n_test
    )


def losses_from_predictions(predictions: pd.DataFrame, days: HoldoutDays) -> DailyLosses | None:
    """The daily losses in a training run's predictions table (evaluation/predictions.csv), or None when it
    is not a table of these test days."""
    lower, upper = f"{LSTM}_lower_{INTERVAL_LEVEL}", f"{LSTM}_upper_{INTERVAL_LEVEL}"
    if LSTM not in predictions or len(predictions) != days.n_test:
        return None
    if not np.allclose(predictions["actual"].to_numpy(dtype=float), days.actual, rtol=1e-9):
        return None
    interval = None
    if lower in predictions and upper in predictions:
        interval = Interval(
            predictions[lower].to_numpy(dtype=float), predictions[upper].to_numpy(dtype=float)
        )
    return daily_losses(days.actual, predictions[LSTM].to_numpy(dtype=float), interval)


def score_from_training(train: Run, days: HoldoutDays) -> DailyLosses | None:
    """The daily losses of `train`'s test predictions, if it was tested on exactly these days; else None."""
    if not same_test_days(train, days):
        return None
    try:
        # From the run's artifact location: by run id, MLflow reads the run twice and searches its
        # logged models first (three requests more on a tracking server).
        predictions = f"{train.info.artifact_uri}/{PREDICTIONS_PATH}"
        path = mlflow.artifacts.download_artifacts(artifact_uri=predictions)
    except (MlflowException, OSError) as error:
        logger.info("No test predictions on training run %s (%s): scoring here", train.info.run_id, error)
        return None
    return losses_from_predictions(pd.read_csv(path), days)


def model_score(model_uri: str, train: Run, days: HoldoutDays) -> tuple[DailyLosses, str]:
    """A model's daily losses on the test days and where they came from (its training run, or scored here)."""
    logged = score_from_training(train, days)
    if logged is not None:
        return logged, SCORED_FROM_TRAINING
    return score(model_uri, days), SCORED_HERE


def day_text(value: pd.Timestamp) -> str:
    """A day as the registry writes it: YYYY-MM-DD."""
    return pd.Timestamp(value).strftime("%Y-%m-%d")
