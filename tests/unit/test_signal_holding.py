"""register_model and forecast hold SIGINT/SIGTERM while TensorFlow loads and runs a model: a signal
that arrives then is raised when that work ends (by `raise_if_interrupted`), never inside TensorFlow."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
import pandas as pd
import pytest

from flow_steps.config.values import PriceChecks
from flow_steps.data.sources import SAMPLE_FILE
from flow_steps.deployment import prediction
from flow_steps.deployment.scoring import holdout_days, score
from flow_steps.runtime import interruption
from flow_steps.runtime.interruption import Interrupted
from tests.support.known_models import BETTER, log_known_model


@contextmanager
def sigterm_once_signals_are_held(timeout: float = 60) -> Iterator[None]:
    """Send this process SIGTERM as soon as the code under test enters `interruptions_held` (never, if it
    does not: then nothing interrupts it and the test's `pytest.raises` fails)."""

    done = threading.Event()

    def send() -> None:
        deadline = time.monotonic() + timeout
        while not interruption._holding.depth and not done.is_set() and time.monotonic() < deadline:
            time.sleep(0.001)
        if interruption._holding.depth:
            os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        yield
    finally:
        done.set()
        sender.join(timeout)


@pytest.fixture
def known_model(tracking, tmp_path) -> str:
    """A logged model (no fit) and the prices it was logged for, in this process's store."""
    prices = pd.read_csv(SAMPLE_FILE)[["Date", "Adj Close"]].rename(columns={"Adj Close": "Close"}).tail(300)
    path = tmp_path / "prices.csv"
    prices.to_csv(path, index=False)
    mlflow.set_experiment(experiment_id=tracking.experiment_id)
    run_id, _ = log_known_model(str(path), BETTER)
    return f"runs:/{run_id}/model", str(path)


def assert_raised_where_held(caught: pytest.ExceptionInfo) -> None:
    assert caught.value.signal_number == signal.SIGTERM
    assert caught.traceback[-1].name == "raise_if_interrupted", caught.getrepr(style="short")


def test_register_model_scores_a_model_with_signals_held(signals_raise, known_model):
    model_uri, prices = known_model
    from flow_steps.runtime.inputs import read_prepared

    days = holdout_days(read_prepared(prices, "stock_data"), 0.2)
    with pytest.raises(Interrupted) as caught, sigterm_once_signals_are_held():
        score(model_uri, days)
    assert_raised_where_held(caught)


def test_forecast_loads_and_runs_a_model_with_signals_held(signals_raise, known_model):
    model_uri, prices = known_model
    with pytest.raises(Interrupted) as caught, sigterm_once_signals_are_held():
        prediction.forecast(model_uri, "MSFT", prices, "WIKI", 5, PriceChecks(), pd.Timestamp.now(tz="UTC"))
    assert_raised_where_held(caught)
