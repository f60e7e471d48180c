"""`replay`: the daily schedule as of every session of a range, end to end on the bundled sample.

At `monitor_alpha` 0.5 a tiny LSTM (one epoch) that does no better than the naive forecast is flagged
as soon as the tests have their days (Diebold-Mariano: 16), so the range sees retrainings: each one a
child pipeline as of its day, registered under the replay's own name, loaded once as champion.
"""

from __future__ import annotations

import sys

import mlflow
import pandas as pd
import pytest

from flow_steps.config.names import (
    DATE_COLUMN,
    REPLAY_CHART_PATH,
    REPLAY_DAYS_PATH,
    REPLAY_ENTRY_POINT,
    REPLAY_SCORED_DAYS_PATH,
    TAG_CHAMPION_VERSION,
    TRAIN_STEP,
    registered_model_name,
)
from flow_steps.data.sessions import next_sessions
from tests.conftest import TINY_PARAMS, cli_options, run_command

START, END = "2012-11-01", "2012-12-31"
# NYSE sessions 2012-11-01 .. 12-31: 43 weekdays less 11-22 (Thanksgiving) and 12-25.
SESSIONS = 41


def test_replay_runs_the_schedule_every_session_and_retrains_a_degraded_champion(tracking):
    params = {key: value for key, value in TINY_PARAMS.items() if key != "register_model"}
    command = [sys.executable, "-m", "flow_steps.replay", "--start", START, "--end", END]
    result = run_command(
        [*command, *cli_options(params), "--monitor-alpha", "0.5"], tracking.env, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1].startswith(f"Replayed {SESSIONS} sessions of MSFT")

    [replay] = tracking.runs_of_name(REPLAY_ENTRY_POINT)
    assert replay.info.status == "FINISHED"
    metrics = replay.data.metrics
    days = pd.read_csv(mlflow.artifacts.download_artifacts(f"{replay.info.artifact_uri}/{REPLAY_DAYS_PATH}"))
    scored = pd.read_csv(
        mlflow.artifacts.download_artifacts(f"{replay.info.artifact_uri}/{REPLAY_SCORED_DAYS_PATH}")
    )
    assert len(days) == metrics["sessions"] == SESSIONS
    assert days[DATE_COLUMN].iloc[0] == START and days[DATE_COLUMN].iloc[-1] == END
    # Every forecast is of the session after the day it was made (the last one's has no close yet).
    made_on = pd.to_datetime(scored["forecast_run_id"])
    expected = [next_sessions("XNYS", day, 1)[0] for day in made_on]
    assert (pd.to_datetime(scored[DATE_COLUMN]) == pd.DatetimeIndex(expected)).all()
    assert len(scored) == metrics["days_scored"] == SESSIONS - 1

    retrained = days[days["retrained"]]
    assert metrics["retrainings"] == len(retrained) >= 1
    assert metrics["days_flagged"] == (days["degradation"].fillna("") != "").sum() == len(retrained)
    assert retrained["degradation"].str.contains("test:").all()  # names the test that flagged it
    assert metrics["promotions"] == days["promoted"].sum()

    # One pipeline a champion or challenger: the first, and one per retraining, each a child of the replay.
    pipelines = [
        run for run in tracking.runs() if run.data.tags.get("mlflow.parentRunId") == replay.info.run_id
    ]
    assert len(pipelines) == 1 + len(retrained)
    assert {run.data.params["as_of"] for run in pipelines} == {"2012-10-31", *retrained[DATE_COLUMN]}
    assert len(tracking.runs_of(TRAIN_STEP)) == len(pipelines)
    # Each champion loaded once; the versions it ran with are those the registry says.
    assert metrics["models_loaded"] == days[TAG_CHAMPION_VERSION].nunique()
    [model] = tracking.client.search_registered_models()
    assert model.name.startswith(f"{registered_model_name('MSFT')}-replay-")  # the ticker's own untouched
    assert len(tracking.client.search_model_versions(f"name = '{model.name}'")) == len(pipelines)

    for name in ("realized_rmse_vs_naive", "realized_coverage_80", "realized_static_coverage_95"):
        assert 0 < metrics[name] < 2, name
    assert metrics["realized_coverage_80"] == pytest.approx(scored["inside_80"].mean())
    artifacts = {item.path for item in tracking.client.list_artifacts(replay.info.run_id, "replay")}
    assert REPLAY_CHART_PATH in artifacts
    assert not [run.info.run_name for run in tracking.runs() if run.info.status == "RUNNING"]


def test_a_range_without_prices_before_it_is_one_line(tracking):
    command = [sys.executable, "-m", "flow_steps.replay", "--start", "2000-01-03", "--end", "2000-06-01"]
    result = run_command(command, tracking.env, timeout=300)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "start 2000-01-03 .. end 2000-06-01 needs closes before start and in the range; the prices run "
            "2000-03-01 .. 2000-06-01"
        )
    )
    [replay] = tracking.runs_of_name(REPLAY_ENTRY_POINT)
    assert replay.info.status == "FAILED"
