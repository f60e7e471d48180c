"""Monitoring on time-split data: forecasts made with prices through day T (and T-5), scored by `monitor`
with prices through T+10, against a hand computation; with too few days the tests say how many they
need; a deliberately biased champion is flagged by Diebold-Mariano, one with far too narrow intervals by
Kupiec's test.

The champions are models of known behaviour (tests/support/known_models.py): `BETTER` forecasts
exactly the last close (the naive forecast), BIAS's a 3% rise every day, NARROW's the naive forecast with
intervals a tenth of the width they need. The commands run in this process (click).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from flow_steps import forecast, monitor
from flow_steps.config.entry_points import BY_ENTRY_POINT
from flow_steps.config.names import (
    FORECAST_ENTRY_POINT,
    FORECAST_TABLE_PATH,
    KEPT,
    MODEL_VERSION_COLUMN,
    MONITOR_BY_VERSION_PATH,
    MONITOR_ENTRY_POINT,
    MONITOR_SCORED_DAYS_PATH,
    TRANSFORM_STEP,
    TRANSFORMED_DATA_PATH,
    registered_model_name,
)
from flow_steps.data.ingest import load_prices
from flow_steps.data.sources import SAMPLE_FILE
from flow_steps.deployment.degradation import RUN_COLUMN, judge, realized_metrics
from tests.conftest import EXPERIMENT, run_command
from tests.support.helpers import local_copy, mlflow_run, newest, prepared_prices
from tests.support.known_models import BETTER, NARROW, WORSE, register

BIASED = 1.5  # a 3% rise every day (known_models: last close * exp(1.5 * 0.02))
TOO_FEW = (
    "one-day-ahead days scored: Diebold-Mariano needs 16; Kupiec and Christoffersen at 80% need 25; "
    "Kupiec and Christoffersen at 95% need 100"
)


@pytest.fixture
def prices_at(tmp_path):
    """Price files of the bundled sample cut `days` before its end: {0: through T+10, 10: through T, ...}."""
    sample = pd.read_csv(SAMPLE_FILE)

    def cut(days: int) -> str:
        path = tmp_path / f"prices-minus-{days}.csv"
        (sample.iloc[:-days] if days else sample).to_csv(path, index=False)
        return str(path)

    return cut


@pytest.fixture
def champions(tracking, monkeypatch, prices_at):
    """MSFT's champion forecasts the last close; BIAS's a 3% rise a day; NARROW's the last close with
    intervals far too narrow. All trained on prices through T."""
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    _, prepared = prepared_prices("--data-source", prices_at(10))
    stock_data = local_copy(prepared)
    for ticker, scaled_return in (("MSFT", BETTER), ("BIAS", BIASED)):
        name = registered_model_name(ticker)
        assert register(tracking.client, stock_data, scaled_return, name).decision == "first_version"
    narrow = register(tracking.client, stock_data, BETTER, registered_model_name("NARROW"), False, NARROW)
    assert narrow.decision == "first_version"
    return tracking


def run(command, *args: str) -> int:
    """The command's exit code; anything but 0 (done) or 2 (degraded, with --fail-on-degradation) fails."""
    result = CliRunner().invoke(command, list(args))
    assert result.exit_code in (0, 2), result.output
    return result.exit_code


def forecast_from(ticker: str, source: str, *model: str, horizon: int = 10) -> str:
    """Forecast `horizon` days with the ticker's champion (or `--model ...`); the forecast run's id."""
    arguments = ["--company-abbreviation", ticker, "--data-source", source, "--horizon", str(horizon), *model]
    result = CliRunner().invoke(forecast.cli, arguments)
    assert result.exit_code == 0, result.output
    return newest(tracking_runs(FORECAST_ENTRY_POINT)).info.run_id


def daily_forecasts(ticker: str, days: int, prices_at) -> None:
    """One-day-ahead forecasts made on each of the `days` sessions before the last: the daily schedule."""
    for cut in range(days, 0, -1):
        forecast_from(ticker, prices_at(cut), horizon=1)


def tracking_runs(name: str) -> list:
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    return mlflow.MlflowClient().search_runs(
        [experiment.experiment_id], f"attributes.run_name = '{name}'", max_results=1000
    )


def newest_monitor_run(tracking):
    return newest(tracking.runs_of_name(MONITOR_ENTRY_POINT))


def hand_scores(tracking, ticker: str, later_source: str) -> dict[str, float]:
    """Every logged forecast of `ticker` against the later closes, computed here from the logged tables."""
    closes = load_prices(Path(later_source).read_bytes(), later_source).prices.set_index("Date")["Close"]
    errors, naive_errors, inside = [], [], {80: [], 95: []}
    for found in tracking.runs(f"tags.forecast_tickers LIKE '%,{ticker},%'"):
        table = pd.read_csv(
            tracking.client.download_artifacts(found.info.run_id, FORECAST_TABLE_PATH), parse_dates=["Date"]
        )
        for row in table.itertuples():
            if row.Date not in closes.index:
                continue  # no close that day yet
            actual = closes[row.Date]
            errors.append(actual - row.forecast_close)
            naive_errors.append(actual - row.last_close)
            inside[80].append(row.lower_80 <= actual <= row.upper_80)
            inside[95].append(row.lower_95 <= actual <= row.upper_95)
    rmse, naive_rmse = np.sqrt(np.mean(np.square(errors))), np.sqrt(np.mean(np.square(naive_errors)))
    return {
        "realized_days": len(errors),
        "realized_rmse": rmse,
        "realized_naive_rmse": naive_rmse,
        "realized_rmse_vs_naive": rmse / naive_rmse,
        "realized_coverage_80": np.mean(inside[80]),
        "realized_coverage_95": np.mean(inside[95]),
    }


def test_realized_metrics_match_a_hand_computation_and_a_sound_champion_is_not_flagged(champions, prices_at):
    tracking = champions
    forecast_from("MSFT", prices_at(15))  # made on T-5
    forecast_from("MSFT", prices_at(10))  # made on T
    assert run(monitor.cli, "--data-source", prices_at(0), "--fail-on-degradation", "true") == 0

    found = newest_monitor_run(tracking)
    assert found.info.status == "FINISHED"
    assert found.data.tags["degraded"] == "false" and found.data.tags["champion_version"] == "1"
    expected = hand_scores(tracking, "MSFT", prices_at(0))
    assert found.data.metrics["days_scored"] == expected.pop("realized_days")
    # Dated with the NYSE's sessions, every day of both forecasts has a close by T+10 (on weekdays, the
    # forecast from T-5 would hold Presidents' Day, 2013-02-18, and miss the session a row later).
    assert found.data.metrics["days_scored"] == 2 * 10
    assert found.data.metrics["forecasts_scored"] == 2
    for name, value in expected.items():
        assert found.data.metrics[name] == pytest.approx(value, rel=1e-9), name
    assert found.data.metrics["realized_rmse_vs_naive"] == pytest.approx(1.0)  # it is the naive forecast
    # The tests take each forecast's first day: 2 days, too few for any of them, and each says so.
    assert found.data.metrics["realized_tested_days"] == 2
    assert found.data.tags["too_few_days"] == f"2 {TOO_FEW}"
    assert "realized_dm_p_value" not in found.data.metrics and "kupiec_80_p_value" not in found.data.metrics

    # Too few days flag nothing, whatever the level.
    lenient = ["--monitor-alpha", "0.5", "--fail-on-degradation", "true"]
    assert run(monitor.cli, "--data-source", prices_at(0), *lenient) == 0
    assert newest_monitor_run(tracking).data.tags["degraded"] == "false"


def test_a_biased_champion_is_flagged_degraded_by_diebold_mariano(champions, prices_at):
    tracking = champions
    daily_forecasts("BIAS", 16, prices_at)  # the fewest days the test runs on
    args = ["--company-abbreviation", "BIAS", "--data-source", prices_at(0)]
    assert run(monitor.cli, *args) == 0  # flagged, but told not to fail
    assert run(monitor.cli, *args, "--fail-on-degradation", "true") == 2

    found = newest_monitor_run(tracking)
    assert found.info.status == "FINISHED" and found.data.tags["degraded"] == "true"
    expected = hand_scores(tracking, "BIAS", prices_at(0))
    assert found.data.metrics["realized_rmse_vs_naive"] == pytest.approx(expected["realized_rmse_vs_naive"])
    metrics = found.data.metrics
    assert metrics["realized_tested_days"] == 16 and metrics["realized_dm_p_value"] <= 0.05
    assert found.data.tags["degradation"].startswith("Diebold-Mariano test: realized RMSE ")
    assert (
        f"over 16 days, p={metrics['realized_dm_p_value']:.3g} <= monitor_alpha 0.05"
        in (found.data.tags["degradation"])
    )
    by_version = pd.read_csv(tracking.client.download_artifacts(found.info.run_id, MONITOR_BY_VERSION_PATH))
    assert by_version["model_version"].astype(str).tolist() == ["1"]
    assert by_version["days"].tolist() == [16]  # the 16 sessions before the last, all traded
    # On the same days a level below the p-value flags nothing.
    alpha = f"{metrics['realized_dm_p_value'] / 2:.3g}"
    assert run(monitor.cli, *args, "--monitor-alpha", alpha, "--fail-on-degradation", "true") == 0


def test_intervals_that_miss_far_too_often_fail_kupiecs_test(champions, prices_at):
    tracking = champions
    daily_forecasts("NARROW", 25, prices_at)  # the fewest days the 80% tests run on
    assert run(monitor.cli, "--company-abbreviation", "NARROW", "--data-source", prices_at(0)) == 0
    found = newest_monitor_run(tracking)
    metrics, tags = found.data.metrics, found.data.tags
    assert tags["degraded"] == "true" and metrics["kupiec_80_p_value"] <= 0.05
    assert metrics["realized_dm_p_value"] == 1.0  # the naive forecast itself: no evidence against it
    days = pd.read_csv(tracking.client.download_artifacts(found.info.run_id, MONITOR_SCORED_DAYS_PATH))
    missed = int((days["inside_80"] == 0).sum())
    assert tags["degradation"].startswith(
        f"Kupiec test: the 80% interval missed {missed} of 25 days (expected 5), "
        f"p={metrics['kupiec_80_p_value']:.3g} <= monitor_alpha 0.05"
    )
    assert tags["too_few_days"] == "25 one-day-ahead days scored: Kupiec and Christoffersen at 95% need 100"


def test_nothing_to_score_yet_is_not_a_failure(champions, prices_at):
    tracking = champions
    made = forecast_from("MSFT", prices_at(10))
    assert tracking.client.get_run(made).info.status == "FINISHED"  # there is a forecast, not yet due
    assert run(monitor.cli, "--data-source", prices_at(10), "--fail-on-degradation", "true") == 0
    found = newest_monitor_run(tracking)
    assert found.info.status == "FINISHED"
    assert found.data.metrics["forecasts_scored"] == 0 and found.data.tags["degraded"] == "false"


def test_versions_and_tickers_are_scored_apart_with_the_default_thresholds(champions, prices_at):
    """Version 2 (worse: challenger) forecasts through `models:/.../2`, the champion through its alias, the
    challenger through `challenger`; BIAS forecasts too. `monitor` with its defaults scores MSFT's alone,
    per version, and judges the champion by the default thresholds of the parameter spec."""
    tracking = champions
    [transform] = tracking.runs_of_name(TRANSFORM_STEP)
    stock_data = mlflow.artifacts.download_artifacts(f"{transform.info.artifact_uri}/{TRANSFORMED_DATA_PATH}")
    assert register(tracking.client, stock_data, WORSE, registered_model_name("MSFT")).decision == KEPT
    made = {
        "2": forecast_from("MSFT", prices_at(20), "--model", f"models:/{registered_model_name('MSFT')}/2"),
        "1": forecast_from("MSFT", prices_at(15)),
    }
    made["challenger"] = forecast_from("MSFT", prices_at(12), "--model", "challenger")
    forecast_from("BIAS", prices_at(10))
    assert run(monitor.cli, "--data-source", prices_at(0)) == 0  # defaults: never exits 2

    found = newest_monitor_run(tracking)
    defaults = {param.name: param.default for param in BY_ENTRY_POINT[MONITOR_ENTRY_POINT].params}
    for name in ("window_forecasts", "monitor_alpha"):
        assert found.data.params[name] == str(defaults[name]), name
    days = pd.read_csv(tracking.client.download_artifacts(found.info.run_id, MONITOR_SCORED_DAYS_PATH))
    assert set(days[RUN_COLUMN]) == set(made.values())  # MSFT's three, never BIAS's
    assert found.data.metrics["days_scored"] == len(days)
    assert days.groupby(RUN_COLUMN)[MODEL_VERSION_COLUMN].first().to_dict() == {
        made["2"]: 2,
        made["1"]: 1,
        made["challenger"]: 2,
    }
    table = pd.read_csv(tracking.client.download_artifacts(found.info.run_id, MONITOR_BY_VERSION_PATH))
    assert table[MODEL_VERSION_COLUMN].tolist() == [2, 1]  # newest version first
    assert table["days"].tolist() == [(days[MODEL_VERSION_COLUMN] == version).sum() for version in (2, 1)]
    champion = days[days[MODEL_VERSION_COLUMN] == 1]
    assert found.data.metrics["realized_rmse"] == pytest.approx(realized_metrics(champion)["rmse"])
    expected = judge(champion, defaults["monitor_alpha"])
    assert found.data.tags["degraded"] == str(expected.degradation is not None).lower()
    assert found.data.tags.get("degradation") == expected.degradation
    assert (
        found.data.tags["too_few_days"] == expected.too_few_days == f"1 {TOO_FEW}"
    )  # version 1: one forecast
    assert found.data.metrics["realized_days"] == (days[MODEL_VERSION_COLUMN] == 1).sum()

    # window_forecasts=1: only the newest forecast run that has scored days.
    assert run(monitor.cli, "--data-source", prices_at(0), "--window-forecasts", "1") == 0
    window = pd.read_csv(
        tracking.client.download_artifacts(newest_monitor_run(tracking).info.run_id, MONITOR_SCORED_DAYS_PATH)
    )
    assert set(window[RUN_COLUMN]) == {made["challenger"]}


def test_mlflow_run_dash_e_monitor_scores_the_logged_forecasts(champions, prices_at):
    """The `monitor` entry point of MLproject, as a scheduler runs it."""
    tracking = champions
    made = forecast_from("MSFT", prices_at(10))
    command = mlflow_run({"data_source": prices_at(0)}, MONITOR_ENTRY_POINT, EXPERIMENT)
    result = run_command(command, tracking.env)
    assert result.returncode == 0, result.stderr[-3000:]
    [found] = tracking.runs_of(MONITOR_ENTRY_POINT)
    assert found.info.status == "FINISHED" and found.data.metrics["forecasts_scored"] == 1
    days = pd.read_csv(tracking.client.download_artifacts(found.info.run_id, MONITOR_SCORED_DAYS_PATH))
    assert set(days[RUN_COLUMN]) == {made}


def test_forecast_takes_tickers_from_a_file_and_a_model_by_its_run(champions, tmp_path, prices_at):
    """`--company-abbreviation @FILE` forecasts each ticker with its own champion into one table; a
    `runs:/<id>/model` URI forecasts with that training run's model, which no registry version names."""
    tracking = champions
    for ticker in ("MSFT", "BIAS"):
        Path(prices_at(10)).replace(tmp_path / f"{ticker}.csv")
    (tmp_path / "watch-list.txt").write_text("# the watch list\nmsft\nBIAS  # biased by construction\n")
    arguments = ["--company-abbreviation", f"@{tmp_path / 'watch-list.txt'}", "--model", "champion"]
    arguments += ["--data-source", str(tmp_path / "{ticker}.csv"), "--horizon", "3"]
    result = CliRunner().invoke(forecast.cli, arguments)
    assert result.exit_code == 0, result.output
    run = newest(tracking_runs(FORECAST_ENTRY_POINT))
    table = pd.read_csv(tracking.client.download_artifacts(run.info.run_id, FORECAST_TABLE_PATH))
    assert table["ticker"].tolist() == ["MSFT"] * 3 + ["BIAS"] * 3
    assert run.data.tags["forecast_tickers"] == ",MSFT,BIAS,"
    ticker_tags = {key: value for key, value in run.data.tags.items() if key.startswith("forecast_ticker.")}
    assert ticker_tags == {"forecast_ticker.MSFT": "true", "forecast_ticker.BIAS": "true"}  # monitor's

    msft = tracking.client.get_model_version_by_alias(registered_model_name("MSFT"), "champion")
    by_run = forecast_from("MSFT", str(tmp_path / "MSFT.csv"), "--model", f"runs:/{msft.run_id}/model")
    answered = pd.read_csv(tracking.client.download_artifacts(by_run, FORECAST_TABLE_PATH))
    msft_rows = table.loc[table["ticker"] == "MSFT", "forecast_close"]
    assert answered["forecast_close"].head(len(msft_rows)).tolist() == msft_rows.tolist()
