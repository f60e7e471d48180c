"""Team mode: the pipeline against a real `mlflow server` on a real PostgreSQL, with logins and permissions.

One cluster and one server (deploy/team_server.py) for the module, started and stopped here. Users:
alice may write runs and manage the model she registers; bob may only read.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flow_steps.constants import DOWNLOAD_STEP, REGISTER_STEP, TRAIN_STEP, TRANSFORM_STEP
from flow_steps.serving import free_port
from tests.conftest import PROJECT_ROOT, TINY_PARAMS, cli_options, run_command
from tests.team_server import ADMIN, DB_PASSWORD, PostgresCluster, TeamServer

pytestmark = pytest.mark.integration

EXPERIMENT = "team-tests"
MODEL = "stock-MSFT-lstm"
USERS = {"alice": "alice-pw-5e1b-0d8c", "bob": "bob-pw-9c3d-7e21"}
PARAMS = {**TINY_PARAMS, "register_model": "true"}


@pytest.fixture(scope="module")
def team():
    """The cluster, the server and its users; everything stopped at the end, also on failure."""
    folder = Path(tempfile.mkdtemp(prefix="team-server-"))
    (folder / "artifacts").mkdir()
    cluster = PostgresCluster()
    server = TeamServer(cluster, folder / "artifacts")
    try:
        cluster.init().start()
        cluster.create_database("mlflow")
        cluster.create_database("mlflow_auth")
        server.start()
        for user, password in USERS.items():
            server.create_user(user, password)
        answer = server.api("POST", "experiments/create", name=EXPERIMENT)
        answer.raise_for_status()
        experiment_id = answer.json()["experiment_id"]
        server.grant("experiment", experiment_id, "alice", "MANAGE")
        yield server
    finally:
        server.stop()
        cluster.remove()


def env_for(server: TeamServer, user: str | None = None, password: str | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update({"MLFLOW_TRACKING_URI": server.url, "MLFLOW_EXPERIMENT_NAME": EXPERIMENT})
    if user:
        env.update({"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password or USERS[user]})
    return env


def admin_client(server: TeamServer, monkeypatch) -> MlflowClient:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    return MlflowClient(server.url)


def all_runs(client: MlflowClient) -> list:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id], max_results=1000)


def main_py(env: dict[str, str], *options: str):
    return run_command([sys.executable, "main.py", *cli_options(PARAMS), *options], env, timeout=300)


def assert_one_line_failure(result, *fragments: str) -> str:
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in last, last
    return last


def test_a_tracking_server_that_is_down_fails_fast_in_one_line(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    env = {"MLFLOW_TRACKING_URI": url, **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}}
    started = time.monotonic()
    result = run_command([sys.executable, "main.py", "--epochs", "1"], env, timeout=120)
    seconds = time.monotonic() - started
    assert_one_line_failure(result, f"MLFLOW_TRACKING_URI={url}", "connection refused")
    assert seconds < 30, seconds
    step = run_command([sys.executable, "-m", "flow_steps.download_raw_data"], env, timeout=120)
    assert_one_line_failure(step, f"MLFLOW_TRACKING_URI={url}")


@pytest.mark.parametrize(("user", "password"), [(None, None), ("alice", "wrong-password")])
def test_missing_or_wrong_credentials_are_refused_and_nothing_is_written(team, monkeypatch, user, password):
    before = len(all_runs(admin_client(team, monkeypatch)))
    result = main_py(env_for(team, user, password))
    assert_one_line_failure(result, "(401)", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    assert len(all_runs(admin_client(team, monkeypatch))) == before


def test_the_pipeline_runs_through_the_server_and_survives_restarts(team, monkeypatch):
    env = env_for(team, "alice")
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        ".",
        "--env-manager",
        "local",
        "--experiment-name",
        EXPERIMENT,
    ]
    result = run_command(command + [item for k, v in PARAMS.items() for item in ("-P", f"{k}={v}")], env)
    assert result.returncode == 0, result.stderr[-3000:]
    client = admin_client(team, monkeypatch)
    [first_parent] = [run for run in all_runs(client) if "mlflow.parentRunId" not in run.data.tags]
    assert first_parent.info.status == "FINISHED"
    children = {
        run.data.tags["mlflow.project.entryPoint"]: run
        for run in all_runs(client)
        if run.data.tags.get("mlflow.parentRunId") == first_parent.info.run_id
    }
    assert set(children) == {DOWNLOAD_STEP, TRANSFORM_STEP, TRAIN_STEP, REGISTER_STEP}
    assert all(run.info.status == "FINISHED" for run in children.values())
    for step in (DOWNLOAD_STEP, TRANSFORM_STEP):
        assert children[step].info.artifact_uri.startswith("mlflow-artifacts:/")
    assert children[TRAIN_STEP].data.params["stock_data"].startswith("mlflow-artifacts:/")
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert champion.version == "1" and champion.run_id == children[TRAIN_STEP].info.run_id

    # Restart PostgreSQL and the server: no run, artifact, version or alias is lost.
    team.stop()
    team.cluster.stop()
    team.cluster.start()
    team.start()
    assert client.get_run(first_parent.info.run_id).info.status == "FINISHED"
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"
    assert client.get_model_version_by_alias(MODEL, "challenger").version == "1"
    [raw] = client.list_artifacts(children[DOWNLOAD_STEP].info.run_id, "raw-data")
    assert client.download_artifacts(children[DOWNLOAD_STEP].info.run_id, raw.path)


def test_a_read_only_user_writes_nothing(team, monkeypatch):
    before = len(all_runs(admin_client(team, monkeypatch)))
    result = main_py(env_for(team, "bob"))
    assert_one_line_failure(
        result,
        "refused user 'bob' (403)",
        f"write runs to experiment '{EXPERIMENT}'",
        "needs EDIT permission",
    )
    assert len(all_runs(admin_client(team, monkeypatch))) == before


def test_passwords_never_reach_runs_artifacts_or_logs(team, monkeypatch):
    secrets = [DB_PASSWORD, ADMIN[1], *USERS.values()]
    client = admin_client(team, monkeypatch)
    for run in all_runs(client):
        recorded = " ".join([*run.data.params.values(), *run.data.tags.values()])
        assert not [secret for secret in secrets if secret in recorded]
    for path in team.artifacts.rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            content = path.read_bytes()
            assert not [secret for secret in secrets if secret.encode() in content], path
    server_log = team.log()
    assert not [secret for secret in secrets if secret in server_log]
    assert not list(Path(PROJECT_ROOT).glob("mlflow-auth-*.ini"))
