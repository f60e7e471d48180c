"""The forecast command's own rules, in this process: price checks before any model, the version record."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from flow_steps import forecast
from flow_steps.config.names import FORECAST_ENTRY_POINT, TAG_ERROR, TAG_MODEL_VERSION
from flow_steps.data.sources import SAMPLE_FILE
from flow_steps.deployment import prediction


@pytest.fixture
def gap_file(tmp_path) -> str:
    """The sample without 2005 and 2006: a hole no exchange closure explains."""
    sample = pd.read_csv(SAMPLE_FILE)
    years = pd.to_datetime(sample["Date"]).dt.year
    path = tmp_path / "gap.csv"
    sample[(years < 2005) | (years > 2006)].to_csv(path, index=False)
    return str(path)


def test_forecast_runs_the_price_checks_before_loading_any_model(tracking, monkeypatch, gap_file):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", tracking.client.get_experiment(tracking.experiment_id).name)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    model = "models:/no-such-model@champion"  # never reached: the prices are refused first
    result = CliRunner().invoke(forecast.cli, ["--model", model, "--data-source", gap_file])
    assert result.exit_code == 1
    [run] = tracking.runs_of_name(FORECAST_ENTRY_POINT)
    assert run.info.status == "FAILED"
    assert "sessions of XNYS between 2004-12-31 and 2007-01-03" in run.data.tags[TAG_ERROR]
    assert "no-such-model" not in run.data.tags[TAG_ERROR]


@pytest.mark.parametrize(
    ("uri", "tags"),
    [
        ("models:/stock-MSFT-lstm/3", {TAG_MODEL_VERSION: "3"}),
        ("runs:/0123abcd/model", {}),  # not a registry version: monitor labels it by its URI
    ],
)
def test_a_numbered_version_or_a_run_is_recorded_without_asking_the_registry(uri, tags):
    assert prediction.registry_version_tags(uri) == tags


def test_a_forecast_sends_the_closes_after_the_training_end_and_one_window_before_them():
    prices = pd.DataFrame({"Date": pd.bdate_range("2024-01-01", periods=10), "Close": np.arange(1.0, 11.0)})
    config = {"window": 3, "trained_through": "2024-01-05"}  # the 5th close, a Friday

    def sent(**changes: str) -> list[float]:
        return prediction.request_prices(prices, {**config, **changes})["Close"].tolist()

    assert sent() == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]  # from 3 closes before the 6th
    assert sent(trained_through="2024-01-12") == [8.0, 9.0, 10.0]  # through the last close: one window
    assert len(sent(trained_through="2023-06-30")) == 10  # through a date before the prices: all
    assert len(prediction.request_prices(prices, {"window": 3})) == 10  # a model logged before ACI
