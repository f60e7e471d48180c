"""Small helpers the test files share: environments, newest runs, one-line failures, prepared prices."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
from mlflow.entities import Run


def clean_env(**variables: str) -> dict[str, str]:
    """This process's environment without any MLFLOW_* variable, plus `variables`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(variables)
    return env


def newest(runs: list[Run]) -> Run:
    """The run that started last."""
    return max(runs, key=lambda run: run.info.start_time)


def assert_one_line_failure(result: subprocess.CompletedProcess, *fragments: str, exit_code: int = 1) -> str:
    """The command failed with `exit_code`, no traceback, and its last stderr line holds every fragment."""
    assert result.returncode == exit_code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in last, last
    return last


def prepared_prices(*download_options: str, max_row_limit: str = "300") -> tuple[str, str]:
    """Run download_raw_data then transform_data in this process (the active tracking store and
    experiment); the two artifact URIs they print."""
    from flow_steps import download_raw_data, transform_data
    from tests.conftest import invoke_step

    raw = invoke_step(download_raw_data.cli, *download_options)
    prepared = invoke_step(transform_data.cli, "--dataset-stock-csv", raw, "--max-row-limit", max_row_limit)
    return raw, prepared


def local_copy(artifact_uri: str) -> str:
    """A local path of an artifact (downloaded when the store is remote)."""
    return mlflow.artifacts.download_artifacts(artifact_uri)


def mlflow_run(params: dict[str, str], entry_point: str = "main", experiment: str | None = None) -> list[str]:
    """The command line of `mlflow run .` for an MLproject entry point, `-P name=value` per parameter."""
    command = [sys.executable, "-m", "mlflow", "run", ".", "-e", entry_point, "--env-manager", "local"]
    if experiment:
        command += ["--experiment-name", experiment]
    return command + [item for name, value in params.items() for item in ("-P", f"{name}={value}")]
