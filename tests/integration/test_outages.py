"""Faults in the middle of runs, on a team server that speaks HTTPS only (a self-signed certificate made
here with openssl) on its own PostgreSQL: the tracking server killed during training and PostgreSQL
stopped during training are ridden out with the same metrics; a longer outage ends in one line; a kill -9
in the first second of a step leaves nothing RUNNING after the next pipeline; a universe rides out a
server restart. Plain HTTP to the TLS port and a client that does not trust the certificate are refused.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pandas as pd
import pytest
import requests
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from deploy.local_postgres import PostgresCluster
from deploy.local_team import ADMIN, TeamServer, self_signed_certificate
from flow_steps.config.names import METRICS_TABLE_PATH, TAG_CHILD_RUN_PREFIX, TRAIN_STEP, UNIVERSE_ENTRY_POINT
from flow_steps.data.sources import SAMPLE_FILE
from flow_steps.runtime.outages import OUTAGE_VARIABLE
from tests.conftest import PROJECT_ROOT, TINY_PARAMS, cli_options, run_command
from tests.support.helpers import assert_one_line_failure, clean_env

pytestmark = pytest.mark.xdist_group("test_outages")  # one server for the file, on one worker

EXPERIMENT = "outage-tests"
PARAMS = {**TINY_PARAMS, "epochs": "3"}  # a loss history of three epochs to compare
CERT_VARIABLE = "MLFLOW_TRACKING_SERVER_CERT_PATH"
DOWN_SECONDS = 20  # the server is back 20 s after its kill, plus its own start-up


@pytest.fixture(scope="module")
def tls_team() -> Iterator[TeamServer]:
    """A PostgreSQL cluster and a team server with TLS on loopback; both stopped at the end."""
    folder = Path(tempfile.mkdtemp(prefix="outage-team-"))
    (folder / "artifacts").mkdir()
    cluster = PostgresCluster()
    server = TeamServer(cluster, folder / "artifacts", tls=self_signed_certificate(folder))
    try:
        cluster.init().start()
        cluster.create_database("mlflow")
        cluster.create_database("mlflow_auth")
        server.start()
        server.api("POST", "experiments/create", name=EXPERIMENT).raise_for_status()
        yield server
    finally:
        server.stop()
        cluster.remove()
        shutil.rmtree(folder, ignore_errors=True)


def env_for(server: TeamServer, **extra: str) -> dict[str, str]:
    """The admin's environment for the server over HTTPS, trusting its certificate."""
    variables = {
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_EXPERIMENT_NAME": EXPERIMENT,
        "MLFLOW_TRACKING_USERNAME": ADMIN[0],
        "MLFLOW_TRACKING_PASSWORD": ADMIN[1],
        CERT_VARIABLE: str(server.tls[0]),
    }
    return clean_env(**{**variables, **extra})


@pytest.fixture
def client(tls_team, monkeypatch) -> MlflowClient:
    for name, value in env_for(tls_team).items():
        if name.startswith("MLFLOW_"):
            monkeypatch.setenv(name, value)
    return MlflowClient(tls_team.url)


def all_runs(client: MlflowClient) -> list[Run]:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], max_results=1000)


def train_run_of(client: MlflowClient, pipeline: Run) -> Run:
    return client.get_run(pipeline.data.tags[TAG_CHILD_RUN_PREFIX + TRAIN_STEP])


def newest_pipeline(client: MlflowClient) -> Run:
    parents = [run for run in all_runs(client) if "mlflow.parentRunId" not in run.data.tags]
    return max(parents, key=lambda run: run.info.start_time)


def step_processes(server: TeamServer, module: str) -> list[int]:
    """Pids of processes running `python -m <module>` against `server` (other tests' are not)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            command = (entry / "cmdline").read_bytes().split(b"\0")
            if module.encode() in command and f"MLFLOW_TRACKING_URI={server.url}".encode() in (
                entry / "environ"
            ).read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return found


def wait_for_step(server: TeamServer, module: str = f"flow_steps.{TRAIN_STEP}", seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not step_processes(server, module):
        assert time.monotonic() < deadline, f"{module} did not start within {seconds:.0f} s"
        time.sleep(0.05)


def run_with_fault(
    command: list[str], env: dict[str, str], fault: Callable[[], None], seconds: float = 600
) -> subprocess.CompletedProcess:
    """Run `command` (its own process group) while `fault` runs in a thread; its outcome. The group is
    killed if it outlives `seconds` or the test fails."""
    process = subprocess.Popen(
        [sys.executable, *command],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    errors: list[BaseException] = []

    def guarded() -> None:
        try:
            fault()
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    try:
        stdout, stderr = process.communicate(timeout=seconds)
        thread.join(timeout=300)
    finally:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert not errors, errors
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def pipeline(*options: str) -> list[str]:
    return ["main.py", *cli_options(PARAMS), *options]


def comparable(run: Run, client: MlflowClient) -> dict[str, object]:
    """What must not change with an outage: every metric but timings, and the loss history."""
    metrics = {name: value for name, value in run.data.metrics.items() if "seconds" not in name}
    history = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_loss")]
    return {**metrics, "val_loss history": sorted(history)}


@pytest.fixture(scope="module")
def first_pipeline(tls_team) -> subprocess.CompletedProcess:
    """A pipeline with no fault, over HTTPS: the reference for the runs with faults."""
    return run_with_fault(pipeline(), env_for(tls_team), lambda: None)


def test_the_pipeline_runs_over_https_with_a_self_signed_certificate(
    tls_team, first_pipeline, client, tmp_path
):
    assert first_pipeline.returncode == 0, first_pipeline.stderr[-3000:]
    assert tls_team.url.startswith("https://")
    parent = newest_pipeline(client)
    train = train_run_of(client, parent)
    assert parent.info.status == train.info.status == "FINISHED"
    assert train.info.artifact_uri.startswith("mlflow-artifacts:")
    assert train.data.params["stock_data"].startswith("mlflow-artifacts:/")  # read back over HTTPS
    table = client.download_artifacts(train.info.run_id, METRICS_TABLE_PATH, str(tmp_path))
    assert "naive" in Path(table).read_text()


def test_plain_http_to_the_tls_port_does_not_reach_mlflow(tls_team, first_pipeline):
    plain = tls_team.url.replace("https://", "http://")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{plain}/health", timeout=10)
    result = run_command(
        [sys.executable, *pipeline()], env_for(tls_team, MLFLOW_TRACKING_URI=plain), timeout=120
    )
    assert_one_line_failure(result, f"MLFLOW_TRACKING_URI={plain}", "https")


@pytest.mark.parametrize("certificate", ["unset", "another"])
def test_a_client_that_does_not_trust_the_certificate_gets_one_line_and_writes_nothing(
    tls_team, first_pipeline, client, tmp_path, certificate
):
    env = env_for(tls_team)
    if certificate == "unset":
        env.pop(CERT_VARIABLE)
    else:  # a certificate, but not this server's
        env[CERT_VARIABLE] = str(self_signed_certificate(tmp_path)[0])
    before = len(all_runs(client))
    result = run_command([sys.executable, *pipeline()], env, timeout=120)
    assert_one_line_failure(result, tls_team.url, "does not trust", CERT_VARIABLE)
    assert len(all_runs(client)) == before


def test_a_refused_login_over_https_is_one_line(tls_team, first_pipeline, client):
    before = len(all_runs(client))
    result = run_command(
        [sys.executable, *pipeline()], env_for(tls_team, MLFLOW_TRACKING_PASSWORD="wrong"), timeout=120
    )
    assert_one_line_failure(result, "(401)", "MLFLOW_TRACKING_PASSWORD")
    assert len(all_runs(client)) == before


def test_a_server_killed_during_training_and_back_later_is_ridden_out(tls_team, first_pipeline, client):
    def restart() -> None:
        wait_for_step(tls_team)
        time.sleep(2)
        tls_team.kill()
        time.sleep(DOWN_SECONDS)
        tls_team.start()

    result = run_with_fault(pipeline(), env_for(tls_team), restart)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_as_the_first_pipeline(client)


def test_postgresql_stopped_for_ten_seconds_during_training_is_ridden_out(tls_team, first_pipeline, client):
    def database_restart() -> None:
        wait_for_step(tls_team)
        time.sleep(2)
        tls_team.cluster.stop()
        time.sleep(10)
        tls_team.cluster.start()

    result = run_with_fault(pipeline(), env_for(tls_team), database_restart)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_as_the_first_pipeline(client)


def assert_same_as_the_first_pipeline(client: MlflowClient) -> None:
    """The newest pipeline and its steps FINISHED, its training scored as the first pipeline's."""
    parents = sorted(
        (run for run in all_runs(client) if "mlflow.parentRunId" not in run.data.tags),
        key=lambda run: run.info.start_time,
    )
    latest = parents[-1]
    children = client.search_runs(
        [latest.info.experiment_id], f"tags.`mlflow.parentRunId` = '{latest.info.run_id}'"
    )
    assert {run.info.status for run in [latest, *children]} == {"FINISHED"}
    assert TRAIN_STEP in {run.data.tags["mlflow.project.entryPoint"] for run in children}
    assert comparable(train_run_of(client, latest), client) == comparable(
        train_run_of(client, parents[0]), client
    )


def test_an_outage_longer_than_the_setting_ends_in_one_line_and_the_next_pipeline_closes_the_rest(
    tls_team, first_pipeline, client
):
    def long_outage() -> None:
        wait_for_step(tls_team)
        tls_team.kill()

    started = time.monotonic()
    env = env_for(tls_team, **{OUTAGE_VARIABLE: "5"})
    result = run_with_fault(pipeline(), env, long_outage, seconds=300)
    seconds = time.monotonic() - started
    tls_team.start()
    assert_one_line_failure(
        result, f"MLFLOW_TRACKING_URI={tls_team.url}", f"6 s of retries ({OUTAGE_VARIABLE}=5)"
    )
    assert seconds < 120, seconds  # a generous bound: the setting was 5 s, MLflow's own default 4 minutes
    failed = newest_pipeline(client)
    assert failed.info.status in ("RUNNING", "FAILED")  # FAILED only if it reached the server in time

    assert run_with_fault(pipeline("--reuse-training"), env_for(tls_team), lambda: None).returncode == 0
    assert_nothing_left_running(client)
    assert client.get_run(failed.info.run_id).info.status in ("FAILED", "KILLED")


def test_a_kill_in_the_first_second_of_a_step_leaves_nothing_running_after_the_next_pipeline(
    tls_team, first_pipeline, client
):
    """SIGKILL to the pipeline and its step as soon as train_model's process exists: before that process
    could tag its run with itself."""
    process = subprocess.Popen(
        [sys.executable, *pipeline()],
        cwd=PROJECT_ROOT,
        env=env_for(tls_team),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_step(tls_team)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    killed = newest_pipeline(client)
    step = train_run_of_latest_child(client, killed)
    assert step.info.status == "RUNNING" and "process_id" not in step.data.tags  # the window this is about

    assert run_with_fault(pipeline("--reuse-training"), env_for(tls_team), lambda: None).returncode == 0
    assert_nothing_left_running(client)
    closed = client.get_run(step.info.run_id)
    assert closed.info.status == "KILLED" and "parent" in closed.data.tags["error"]


def train_run_of_latest_child(client: MlflowClient, parent: Run) -> Run:
    """The train_model run under `parent` (the parent never recorded it: it was killed first)."""
    [step] = client.search_runs(
        [parent.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and "
        f"tags.`mlflow.project.entryPoint` = '{TRAIN_STEP}'",
    )
    return step


def assert_nothing_left_running(client: MlflowClient) -> None:
    running = [run.info.run_name for run in all_runs(client) if run.info.status == "RUNNING"]
    assert not running, running


@pytest.mark.ray
def test_a_universe_of_two_tickers_rides_out_a_server_restart(tls_team, first_pipeline, client, tmp_path):
    sample = pd.read_csv(SAMPLE_FILE)
    sample.to_csv(tmp_path / "WIKI-AAA.csv", index=False)
    sample.iloc[:1500].to_csv(tmp_path / "WIKI-BBB.csv", index=False)
    params = {**PARAMS, "data_source": str(tmp_path / "WIKI-{ticker}.csv")}

    def restart() -> None:  # in-worker: the steps run inside Ray's workers, so their runs are watched
        experiment_id = client.get_experiment_by_name(EXPERIMENT).experiment_id
        training = f"attributes.status = 'RUNNING' and tags.`mlflow.project.entryPoint` = '{TRAIN_STEP}'"
        deadline = time.monotonic() + 300
        while not client.search_runs([experiment_id], training):
            assert time.monotonic() < deadline, "no train_model run started within 300 s"
            time.sleep(0.2)
        time.sleep(2)
        tls_team.kill()
        time.sleep(DOWN_SECONDS)
        tls_team.start()

    command = [
        "-m",
        "flow_steps.universe",
        "--tickers",
        "AAA,BBB",
        "--max-parallel",
        "2",
        *cli_options(params),
    ]
    result = run_with_fault(command, env_for(tls_team), restart)
    assert result.returncode == 0, result.stderr[-3000:]
    [universe] = [run for run in all_runs(client) if run.info.run_name == UNIVERSE_ENTRY_POINT]
    tickers = client.search_runs(
        [universe.info.experiment_id], f"tags.`mlflow.parentRunId` = '{universe.info.run_id}'"
    )
    assert sorted(run.data.params["company_abbreviation"] for run in tickers) == ["AAA", "BBB"]
    assert {run.info.status for run in tickers} == {"FINISHED"}
    assert universe.info.status == "FINISHED" and universe.data.metrics["tickers_failed"] == 0
