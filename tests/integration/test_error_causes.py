"""A library's cause survives the one line: a universe sent to a token-protected Ray cluster without its
token (or with a wrong one) fails before any run exists, in one line that keeps Ray's words and names
RAY_AUTH_TOKEN (with the token, the same check lets the client in); the team server names the login or
database PostgreSQL refuses, in one line, instead of retrying the same traceback for minutes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.local_postgres import DB_PASSWORD, DB_USER, PostgresCluster, postgres_bin
from deploy.local_serving import HOST, free_port, stop_process_group
from deploy.local_team import ADMIN, TeamServer
from flow_steps.config.errors import PipelineError
from tests.conftest import PROJECT_ROOT, TINY_PARAMS, Tracking, cli_options
from tests.support.helpers import assert_one_line_failure, clean_env
from tests.support.ray_cluster import RayHead

# One worker for the whole file: its module-scoped Ray head is started once.
pytestmark = [pytest.mark.timeout(600), pytest.mark.xdist_group("test_error_causes")]

RAY_REFUSAL = "authentication token is missing or incorrect"  # Ray 2.60's own words, kept


@pytest.fixture(scope="module")
def token_head() -> Iterator[RayHead]:
    """One token-protected Ray head (`ray start --head` with RAY_AUTH_MODE=token) for the file."""
    head = RayHead(num_cpus=1)
    try:
        head.start()
        yield head
    finally:
        head.stop()


def run_in_group(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run `command` from the project root in its own process group, stopped even when the test fails."""
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
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        stop_process_group(process, grace_seconds=5)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def universe(tracking: Tracking, folder: Path, ray_env: dict[str, str]) -> subprocess.CompletedProcess:
    """`python -m flow_steps.universe` for one ticker with `ray_env` (no other RAY_* variable)."""
    env = {key: value for key, value in tracking.env.items() if not key.startswith("RAY_")} | ray_env
    env["HOME"] = str(folder)  # no ~/.ray/auth_token of this machine's user
    params = {**TINY_PARAMS, "data_source": "sample"}
    command = [sys.executable, "-m", "flow_steps.universe", "--tickers", "MSFT", *cli_options(params)]
    return run_in_group(command, env, timeout=300)


@pytest.mark.ray
@pytest.mark.parametrize(
    ("auth", "fragments"),
    [
        ({}, ["the cluster requires a token", RAY_REFUSAL, "set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN"]),
        (
            {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64},
            ["refused this client's token", RAY_REFUSAL, "set RAY_AUTH_TOKEN to the cluster's token"],
        ),
        ({"RAY_AUTH_MODE": "token"}, ["RAY_AUTH_MODE=token but Ray found no token", "set RAY_AUTH_TOKEN"]),
    ],
    ids=["no-token", "wrong-token", "token-mode-without-token"],
)
def test_a_universe_without_the_clusters_token_fails_in_one_line_and_writes_nothing(
    token_head, tracking, tmp_path, auth, fragments
):
    result = universe(tracking, tmp_path, {"RAY_ADDRESS": token_head.address, **auth})

    last = assert_one_line_failure(
        result, f"cannot join the Ray cluster at RAY_ADDRESS={token_head.address}", *fragments
    )
    assert result.stderr.strip() == last, result.stderr[-3000:]  # Ray's own warnings stay in the probe
    assert token_head.token not in result.stderr + result.stdout
    assert tracking.client.search_runs([e.experiment_id for e in tracking.client.search_experiments()]) == []
    assert not list(tracking.folder.rglob("summary.csv"))


@pytest.mark.ray
def test_the_join_check_lets_in_a_client_with_the_token(token_head, monkeypatch, tmp_path):
    from flow_steps.orchestration.cluster import check_cluster_joins

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", token_head.token)
    check_cluster_joins(token_head.address)  # the universe's own join with the token: test_universe.py
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    with pytest.raises(PipelineError, match="RAY_AUTH_MODE=token but Ray found no token"):
        check_cluster_joins(token_head.address)


def team_server(cluster: PostgresCluster, database: str, password: str | None) -> subprocess.CompletedProcess:
    """deploy/team_server.py against `database` of `cluster` with PGPASSWORD `password` (or none)."""
    env = clean_env(MLFLOW_AUTH_ADMIN_PASSWORD=ADMIN[1], MLFLOW_FLASK_SERVER_SECRET_KEY="k" * 32)
    env.pop("PGPASSWORD", None)
    env |= {"PGPASSWORD": password} if password else {"PGPASSFILE": "/nonexistent"}
    command = [sys.executable, str(PROJECT_ROOT / "deploy" / "team_server.py")]
    command += ["--database-uri", cluster.uri(database), "--artifacts-destination", str(cluster.folder / "a")]
    command += ["--port", str(free_port()), "--workers", "1"]
    return run_in_group(command, env, timeout=60)  # the server itself would retry for minutes


@pytest.mark.postgres
def test_the_team_server_names_the_login_or_database_postgresql_refuses(tmp_path):
    cluster = PostgresCluster()
    try:
        cluster.init().start()
        cluster.create_database("mlflow")
        cases = {
            ("mlflow", "wrong-pw-5e1d"): 'FATAL: password authentication failed for user "mlflow"',
            ("mlflow", None): "fe_sendauth: no password supplied",
            ("missing", DB_PASSWORD): 'FATAL: database "missing" does not exist',
            ("mlflow", DB_PASSWORD): 'FATAL: database "mlflow_auth" does not exist',  # the users' database
        }
        results = {case: team_server(cluster, *case) for case in cases}
    finally:
        cluster.remove()
    for (database, password), reason in cases.items():
        result = results[database, password]
        assert result.returncode == 1, result.stderr[-3000:]
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert result.stderr.startswith("team_server: PostgreSQL refused --"), result.stderr
        assert f"({reason})" in result.stderr, result.stderr
        fix = "set PGPASSWORD" if "password" in reason else "create it (createdb)"
        assert fix in result.stderr, result.stderr
        assert DB_PASSWORD not in result.stderr + result.stdout and "wrong-pw-5e1d" not in result.stderr


@pytest.mark.postgres
def test_a_pipeline_names_the_database_refusal_behind_the_servers_503(tmp_path):
    cluster = PostgresCluster()
    server = None
    try:
        cluster.init().start()
        cluster.create_database("mlflow")
        cluster.create_database("mlflow_auth")
        (tmp_path / "artifacts").mkdir()
        server = TeamServer(cluster, tmp_path / "artifacts").start()
        # The database user's password changes under the running server, and its connections end.
        psql = [postgres_bin("psql"), "-h", HOST, "-p", str(cluster.port), "-U", DB_USER, "-d", "postgres"]
        change = "ALTER USER mlflow PASSWORD 'rotated-pw-8c2f'; SELECT pg_terminate_backend(pid) FROM "
        change += "pg_stat_activity WHERE pid <> pg_backend_pid() AND datname IS NOT NULL"
        subprocess.run([*psql, "-c", change], env=clean_env(PGPASSWORD=DB_PASSWORD), check=True, timeout=60)
        env = clean_env(
            MLFLOW_TRACKING_URI=server.url,
            MLFLOW_TRACKING_USERNAME=ADMIN[0],
            MLFLOW_TRACKING_PASSWORD=ADMIN[1],
        )
        result = run_in_group([sys.executable, "main.py"], env, timeout=120)
    finally:
        if server is not None:
            server.stop()
        cluster.remove()
    assert_one_line_failure(
        result,
        f"the tracking server at {server.url} answered 503: its database refused it",
        '(FATAL: password authentication failed for user "mlflow")',
        "the server's admin fixes its PGPASSWORD",
    )
    assert ADMIN[1] not in result.stderr and "rotated-pw-8c2f" not in result.stderr
