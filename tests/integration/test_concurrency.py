"""Pipelines and registrations started at the same moment: none crashes, and promotion is right."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from flow_steps import download_raw_data, transform_data
from flow_steps.concurrency import lock_name
from tests.conftest import EXPERIMENT, PROJECT_ROOT, TINY_PARAMS, cli_options, invoke_step
from tests.known_models import BETTER, WORSE, log_known_model

pytestmark = pytest.mark.integration

KNOWN = "known-rmse-race"


def test_three_pipelines_on_a_fresh_store_all_finish(tmp_path):
    """The registrations they race to make are the next test's subject, with models of known RMSE."""
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"  # no tables yet: the three race to create them
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update({"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "concurrency-tests"})
    command = [sys.executable, "main.py", *cli_options(TINY_PARAMS)]
    pipelines = [
        subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [pipeline.communicate(timeout=600) for pipeline in pipelines]
    for pipeline, (_, stderr) in zip(pipelines, outputs, strict=True):
        assert pipeline.returncode == 0, stderr[-3000:]

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("concurrency-tests")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 3
    assert all(run.info.status == "FINISHED" for run in runs)


def test_racing_registrations_of_known_models_promote_the_best_whatever_the_finishing_order(tracking):
    """Three challengers of known RMSE (worse, better, worst) registered by three processes at once."""
    mlflow.set_experiment(EXPERIMENT)
    raw = mlflow.artifacts.download_artifacts(invoke_step(download_raw_data.cli))
    prepared = mlflow.artifacts.download_artifacts(
        invoke_step(
            transform_data.cli, "--dataset-stock-csv", raw, "--max-row-limit", TINY_PARAMS["max_row_limit"]
        )
    )
    # Scored from their runs (no TensorFlow start-up per process): the decisions are what is tested here.
    logged = [log_known_model(prepared, c, as_trained=True) for c in (WORSE, BETTER, 2 * WORSE)]
    registrations = [
        subprocess.Popen(
            [sys.executable, "-m", "flow_steps.register_model", "--model-uri", f"runs:/{run_id}/model"]
            + ["--stock-data", prepared, "--model-name", KNOWN],
            cwd=PROJECT_ROOT,
            env=tracking.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for run_id, _ in logged
    ]
    for registration in registrations:
        _, stderr = registration.communicate(timeout=300)
        assert registration.returncode == 0, stderr[-3000:]

    best_run_id = logged[1][0]
    versions = tracking.client.search_model_versions(f"name = '{KNOWN}'")
    assert sorted(version.tags["promotion"] for version in versions).count("first_version") == 1
    champion = tracking.client.get_model_version_by_alias(KNOWN, "champion")
    assert champion.run_id == best_run_id
    assert lock_name(KNOWN) not in {model.name for model in tracking.client.search_registered_models()}
