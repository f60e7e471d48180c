"""A library's cause survives the one line: a universe sent to a token-protected Ray cluster without its
token (or with a wrong one) fails before any run exists, in one line that keeps Ray's words and names
RAY_AUTH_TOKEN; with the token, the same check lets the client in."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flow_steps.config.errors import PipelineError
from flow_steps.runtime.local_server import stop_process_group
from tests.conftest import PROJECT_ROOT, TINY_PARAMS, Tracking, cli_options
from tests.support.helpers import assert_one_line_failure
from tests.support.ray_cluster import RayHead

# One worker for the whole file: its module-scoped Ray head is started once.
pytestmark = [pytest.mark.ray, pytest.mark.timeout(600), pytest.mark.xdist_group("test_error_causes")]

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


def universe(tracking: Tracking, folder: Path, ray_env: dict[str, str]) -> subprocess.CompletedProcess:
    """`python -m flow_steps.universe` for one ticker with `ray_env` (no other RAY_* variable), in its
    own process group, stopped even when the test fails."""
    env = {key: value for key, value in tracking.env.items() if not key.startswith("RAY_")} | ray_env
    env["HOME"] = str(folder)  # no ~/.ray/auth_token of this machine's user
    params = {**TINY_PARAMS, "data_source": "sample"}
    command = [sys.executable, "-m", "flow_steps.universe", "--tickers", "MSFT", *cli_options(params)]
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
        stdout, stderr = process.communicate(timeout=300)
    finally:
        stop_process_group(process, grace_seconds=5)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


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
