"""The daily loop on a live source, end to end: a loopback Tiingo that gains sessions day by day, and the
schedule of docs/deployment.md (deploy/daily.sh: forecast, monitor, retrain when degraded), its
forecasts made as of sixteen days and the script run as of the next. Also: `as_of` reads the same raw
file however many sessions the source gained since, and a bar whose session has not closed is never read.

Dates are worked from the NYSE's calendar by hand: Friday 2013-02-15 is followed by Presidents' Day
(Monday 2013-02-18, closed), so its next five sessions are 02-19, 02-20, 02-21, 02-22 and 02-25.
"""

from __future__ import annotations

import io
import subprocess

import pandas as pd
import pytest
from click.testing import CliRunner

from deploy.local_serving import stop_process_group
from flow_steps import download_raw_data, forecast
from flow_steps.config.names import (
    DOWNLOAD_STEP,
    FORECAST_ENTRY_POINT,
    FORECAST_TABLE_PATH,
    MONITOR_ENTRY_POINT,
    TAG_AS_OF,
    TAG_RAW_LAST_DATE,
    TAG_RAW_SHA256,
    TRAIN_STEP,
    registered_model_name,
)
from flow_steps.data.sources import fetch_raw_prices
from tests.conftest import EXPERIMENT, PROJECT_ROOT, TINY_PARAMS, cli_options
from tests.support.helpers import local_copy, newest, prepared_prices
from tests.support.known_models import register
from tests.support.tiingo_server import TiingoServer, tiingo_frame

KEY = "tk-DAILY-LOOP-9f2c4e"
TICKER = "MSFT"
DAY_1, DAY_2 = "2013-02-15", "2013-02-25"
# The sixteen sessions up to DAY_1 (Diebold-Mariano's minimum of scored days), then the next one.
FORECAST_DAYS = ["2013-01-25", "2013-01-28", "2013-01-29", "2013-01-30", "2013-01-31", "2013-02-01"]
FORECAST_DAYS += ["2013-02-04", "2013-02-05", "2013-02-06", "2013-02-07", "2013-02-08", "2013-02-11"]
FORECAST_DAYS += ["2013-02-12", "2013-02-13", "2013-02-14", DAY_1]
SCHEDULED_DAY = "2013-02-19"
BIASED = 1.5  # known_models: forecasts last close * exp(1.5 * 0.02), a 3% rise every day
TIINGO_OPTIONS = ["--data-source", "tiingo", "--company-abbreviation", TICKER]
SESSIONS_AFTER_DAY_1 = ["2013-02-19", "2013-02-20", "2013-02-21", "2013-02-22", "2013-02-25"]


def served_through(last_day: str) -> pd.DataFrame:
    """The stand-in's prices as they stood once `last_day` had traded."""
    frame = tiingo_frame()
    return frame[frame["date"] <= last_day].reset_index(drop=True)


@pytest.fixture
def tiingo(tracking, monkeypatch):
    server = TiingoServer(frames={TICKER: served_through(DAY_1)}, token=KEY).start()
    for name, value in {
        "TIINGO_API_KEY": KEY,
        "TIINGO_API_BASE": server.url,
        "PRICE_SOURCE_TIMEOUT": "10",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    try:
        yield server
    finally:
        server.stop()


def daily(tracking, tiingo: TiingoServer, as_of: str, *main_options: str) -> subprocess.CompletedProcess:
    """deploy/daily.sh as cron runs it, as of `as_of`, in its own process group (stopped by the test)."""
    env = {**tracking.env, "TIINGO_API_KEY": KEY, "TIINGO_API_BASE": tiingo.url, "PRICE_SOURCE_TIMEOUT": "10"}
    command = ["bash", "deploy/daily.sh", TICKER, "tiingo", as_of, *main_options]
    process = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            stop_process_group(process)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def runs_named(tracking, name: str) -> list:
    return [run for run in tracking.runs() if run.info.run_name == name]


def test_a_past_day_reads_the_same_raw_file_however_many_sessions_came_since(tiingo, tracking):
    tags = []
    for last_served in (DAY_1, DAY_2):
        tiingo.frames[TICKER] = served_through(last_served)
        result = CliRunner().invoke(
            download_raw_data.cli,
            ["--data-source", "tiingo", "--company-abbreviation", TICKER, "--as-of", DAY_1],
        )
        assert result.exit_code == 0, result.output
        tags.append(newest(runs_named(tracking, DOWNLOAD_STEP)).data.tags)
    assert tags[0][TAG_RAW_SHA256] == tags[1][TAG_RAW_SHA256]
    assert tags[0][TAG_RAW_LAST_DATE] == tags[1][TAG_RAW_LAST_DATE] == DAY_1
    assert tags[0][TAG_AS_OF] == tags[1][TAG_AS_OF] == f"{DAY_1}T23:59:59.999999+00:00"


@pytest.mark.parametrize(
    ("now", "last_read"),
    [
        ("2013-02-25 20:59:59", "2013-02-22"),  # a second before the NYSE closes (16:00 EST = 21:00 UTC)
        ("2013-02-25 21:00:00", "2013-02-25"),  # the close
    ],
)
def test_a_bar_whose_session_has_not_closed_is_not_read(tiingo, now, last_read):
    tiingo.frames[TICKER] = served_through(DAY_2)  # the source already sends the day's bar
    raw = fetch_raw_prices("tiingo", TICKER, now=pd.Timestamp(now, tz="UTC"))
    dates = pd.read_csv(io.BytesIO(raw.content))["date"]
    assert dates.iloc[-1] == last_read


def forecast_as_of(tracking, day: str) -> pd.DataFrame:
    """What the schedule's forecast does on `day` (in this process): the logged table."""
    result = CliRunner().invoke(forecast.cli, [*TIINGO_OPTIONS, "--horizon", "5", "--as-of", day])
    assert result.exit_code == 0, result.output
    run = newest(runs_named(tracking, FORECAST_ENTRY_POINT))
    assert run.data.tags[TAG_AS_OF] == f"{day}T23:59:59.999999+00:00"
    return pd.read_csv(tracking.client.download_artifacts(run.info.run_id, FORECAST_TABLE_PATH))


def test_the_daily_schedule_forecasts_scores_and_retrains_a_degraded_champion(tiingo, tracking):
    # A champion that forecasts a 3% rise every day, trained on the prices through the first day.
    _, prepared = prepared_prices(*TIINGO_OPTIONS, "--as-of", FORECAST_DAYS[0])
    model_name = registered_model_name(TICKER)
    assert register(tracking.client, local_copy(prepared), BIASED, model_name).decision == "first_version"

    # Sixteen days of the schedule's forecasts, each as of its day, the source gaining a session a day.
    for day in FORECAST_DAYS:
        tiingo.frames[TICKER] = served_through(day)
        table = forecast_as_of(tracking, day)
    assert table["Date"].tolist() == SESSIONS_AFTER_DAY_1  # the forecast of 2013-02-15
    assert tracking.runs_of(TRAIN_STEP) == []

    # The next session, after its close, deploy/daily.sh as cron runs it: the source also sends the
    # day after, which it must not read. Monitor scores the sixteen one-day-ahead forecasts, finds the
    # champion significantly worse than the naive forecast, exits 2, and the script retrains.
    tiingo.frames[TICKER] = served_through("2013-02-20")
    day = daily(tracking, tiingo, SCHEDULED_DAY, *cli_options({**TINY_PARAMS, "register_model": "true"}))
    assert day.returncode == 0, day.stderr[-3000:]
    monitored = newest(runs_named(tracking, MONITOR_ENTRY_POINT))
    assert monitored.data.metrics["realized_tested_days"] == len(FORECAST_DAYS)
    assert monitored.data.tags["degraded"] == "true"
    assert "Diebold-Mariano" in monitored.data.tags["degradation"]

    # The retraining: a pipeline on the prices through the scheduled day, registered as version 2.
    downloads = [
        run for run in tracking.runs_of(DOWNLOAD_STEP) if run.data.params.get("as_of") == SCHEDULED_DAY
    ]
    assert [run.data.tags[TAG_RAW_LAST_DATE] for run in downloads] == [SCHEDULED_DAY]
    versions = tracking.client.search_model_versions(f"name = '{model_name}'")
    assert sorted(int(version.version) for version in versions) == [1, 2]
    assert KEY not in day.stdout + day.stderr
    assert not [run.info.run_name for run in tracking.runs() if run.info.status == "RUNNING"]
