"""Shared fixtures: a temporary MLflow tracking store and helpers to run the real entry points."""

from __future__ import annotations

import atexit
import functools
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from flow_steps.runtime.interruption import EXIT_CODES, raise_on_termination
from tests.support.fast_tier import fast_tier_guard
from tests.support.helpers import clean_env
from tests.support.price_server import PriceServer

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = PROJECT_ROOT / "tests" / "fixtures"
EXPERIMENT = "pipeline-tests"
# Small enough to train in seconds on 2 cores, large enough for a real split. Registration is
# tested where it matters (test_pipeline's mlflow run, test_deployment); elsewhere it only costs time.
TINY_PARAMS = {
    "max_row_limit": "300",
    "window": "10",
    "epochs": "1",
    "lstm_units": "8",
    "batch_size": "32",
    "register_model": "false",
}


# The longest files, handed out first so that none of them starts last and runs alone (measured:
# the team server file takes about 4 minutes on one worker, the universe tests about 3), then the
# slower of the rest: the unit tests that train took the last 50 s on one worker while the other idled.
LONGEST_FIRST = (
    "test_outages.py",
    "test_universe.py",
    "test_team_server.py",
    "test_concurrency.py",
    "test_pipeline.py",
    "test_notebook.py",
    "test_interruptions.py",
    "test_suspect_data.py",
    "test_remote_sources.py",
    "test_deployment.py",
    # then the slower of the rest (seconds per test), so that only quick tests are left for the end
    "test_lstm.py",
    "test_structure.py",
    "test_bad_input.py",
    "test_monitoring.py",
    "test_sources.py",
)

# The tiers. `slow` is everything the fast tier may not do: start a process, a server (PostgreSQL, a
# tracking or model server, an HTTP stand-in), Ray or a TensorFlow fit. Every test under
# tests/integration is slow; a unit test that needs one of those says so with @pytest.mark.slow. The
# resource markers say which outside thing a slow test needs, and imply `slow`.
RESOURCE_MARKERS = ("postgres", "ray", "serve", "kernel")
# Fixtures that start a resource mark the tests that use them.
FIXTURE_MARKERS = {
    "team": "postgres",
    "access_team": "postgres",
    "tls_team": "postgres",
    "price_server": "slow",
    "served_champion": "serve",
}
FAST_TIMEOUT = 60  # seconds per fast test; slow tests have the ini's `timeout`


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tiers, give fast tests their short timeout, and order the tests longest files first."""
    for item in items:
        names = {marker.name for marker in item.iter_markers()}
        names |= {FIXTURE_MARKERS[name] for name in item.fixturenames if name in FIXTURE_MARKERS}
        if "integration" in item.path.parts or names & {*RESOURCE_MARKERS, "slow"}:
            for name in sorted(names & set(RESOURCE_MARKERS)) + ["slow"]:
                item.add_marker(name)
        elif item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(FAST_TIMEOUT))

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """A test not marked slow runs with processes, servers and fits forbidden: doing one fails it."""
    if item.get_closest_marker("slow"):
        return (yield)
    with fast_tier_guard(item.nodeid):
        return (yield)


@dataclass
class Tracking:
    """A temporary tracking store (sqlite) with its own experiment and artifact folder."""

    uri: str
    client: MlflowClient
    experiment_id: str
    env: dict[str, str]
    folder: Path

    def runs(self, filter_string: str = "") -> list[Run]:
        return self.client.search_runs([self.experiment_id], filter_string, max_results=1000)

    def runs_of(self, entry_point: str) -> list[Run]:
        return self.runs(f"tags.`mlflow.project.entryPoint` = '{entry_point}'")

    def runs_of_name(self, run_name: str) -> list[Run]:
        """Runs named `run_name`: steps started by `mlflow run` or directly (run_step names them)."""
        return self.runs(f"attributes.run_name = '{run_name}'")

    def parents(self) -> list[Run]:
        return [run for run in self.runs() if "mlflow.parentRunId" not in run.data.tags]

    def children(self, parent: Run) -> dict[str, Run]:
        found = self.runs(f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        return {run.data.tags["mlflow.project.entryPoint"]: run for run in found}


@functools.cache
def empty_store() -> Path:
    """An empty sqlite store with MLflow's tables, made once per test process and removed at its end.

    Creating the tables takes about 3 s of CPU; each test's store is a copy of this one (milliseconds).
    Tests of a store that does not exist yet (test_concurrency) make their own.
    """
    folder = Path(tempfile.mkdtemp(prefix="mlflow-empty-store-"))
    path = folder / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return path


@contextmanager
def temporary_tracking(folder: Path) -> Iterator[Tracking]:
    """A new sqlite store in `folder` (a copy of the empty store), this process's tracking URI while the
    context is open."""
    shutil.copyfile(empty_store(), folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=(folder / "artifacts").as_uri())
    env = clean_env(MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME=EXPERIMENT)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield Tracking(uri, client, experiment_id, env, folder)
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture
def tracking(tmp_path: Path) -> Iterator[Tracking]:
    with temporary_tracking(tmp_path) as store:
        yield store


def run_command(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a command from the project root, capturing its output."""
    return subprocess.run(
        args, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def python_main(tracking: Tracking, *options: str) -> subprocess.CompletedProcess:
    return run_command([sys.executable, "main.py", *options], tracking.env)


def invoke_step(command, *args: str) -> str:
    """Run a step's click command in this process; the output URI it prints (`<step> run <id>: <uri>`)."""
    from click.testing import CliRunner

    result = CliRunner().invoke(command, list(args))
    assert result.exit_code == 0, result.output
    # MLflow prints "View run ... at: <url>" lines too when the store is a tracking server.
    [*_, output] = re.findall(r"^\w+ run [0-9a-f]+: (\S+)$", result.stdout, flags=re.MULTILINE)
    return output


def cli_options(params: dict[str, str]) -> list[str]:
    """`{"max_row_limit": "300"}` -> `["--max-row-limit", "300"]`."""
    return [item for name, value in params.items() for item in (f"--{name.replace('_', '-')}", value)]


@pytest.fixture
def price_server():
    """A loopback stand-in for Quandl (EOD/MSFT served, WIKI/MSFT retired) and for CSV URLs."""
    eod_bytes = (FIXTURES / "EOD-MSFT.csv").read_bytes()
    eod = pd.read_csv(FIXTURES / "EOD-MSFT.csv")
    stooq_layout = eod[["Date", "Open", "High", "Low", "Close", "Volume"]].to_csv(index=False).encode()
    server = PriceServer(
        datasets={"EOD/MSFT": eod},
        files={"EOD-MSFT.csv": eod_bytes, "msft-stooq.csv": stooq_layout},
        retired={"WIKI/MSFT"},
    ).start()
    yield server
    server.stop()


@pytest.fixture
def source_env(monkeypatch, price_server):
    """Point the Quandl source at the loopback server, with no API key set and short timeouts."""
    for name in ("QUANDL_API_KEY", "NASDAQ_DATA_LINK_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QUANDL_API_BASE", price_server.api_base)
    monkeypatch.setenv("PRICE_SOURCE_TIMEOUT", "5")
    return monkeypatch


@pytest.fixture
def signals_raise() -> Iterator[None]:
    """SIGINT and SIGTERM handled as the entry points handle them, the previous handlers back afterwards."""
    previous = {number: signal.getsignal(number) for number in EXIT_CODES}
    raise_on_termination()
    yield
    for number, handler in previous.items():
        signal.signal(number, handler)
