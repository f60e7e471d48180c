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

MODEL = "stock-MSFT-lstm"
UNITS = ("3", "6", "9")  # three different models, so that their RMSEs differ
KNOWN = "known-rmse-race"


def test_three_pipelines_on_a_fresh_store_all_finish_and_the_best_becomes_champion(tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"  # no tables yet: the three race to create them
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update({"MLFLOW_TRACKING_URI": uri, "MLFLOW_EXPERIMENT_NAME": "concurrency-tests"})
    pipelines = [
        subprocess.Popen(
            [
                sys.executable,
                "main.py",
                *cli_options({**TINY_PARAMS, "lstm_units": units, "register_model": "true"}),
            ],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for units in UNITS
    ]
    outputs = [pipeline.communicate(timeout=600) for pipeline in pipelines]
    for pipeline, (_, stderr) in zip(pipelines, outputs, strict=True):
        assert pipeline.returncode == 0, stderr[-3000:]

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("concurrency-tests")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert not [run for run in runs if run.info.status != "FINISHED"]
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert len(versions) == 3
    decisions = sorted(version.tags["promotion"] for version in versions)
    assert decisions.count("first_version") == 1, decisions  # exactly one saw no champion
    # Each version's score on the shared test days; the champion is the lowest, whoever finished last.
    rmse = {version.version: client.get_run(version.run_id).data.metrics["test_rmse"] for version in versions}
    champion = client.get_model_version_by_alias(MODEL, "champion")
    assert rmse[champion.version] == min(rmse.values()), rmse
    assert [model.name for model in client.search_registered_models()] == [MODEL]  # no lock left
    assert lock_name(MODEL) not in {model.name for model in client.search_registered_models()}


def test_racing_registrations_of_known_models_promote_the_best_whatever_the_finishing_order(tracking):
    """Three challengers of known RMSE (worse, better, worst) registered by three processes at once."""
    mlflow.set_experiment(EXPERIMENT)
    raw = mlflow.artifacts.download_artifacts(invoke_step(download_raw_data.cli))
    prepared = mlflow.artifacts.download_artifacts(
        invoke_step(
            transform_data.cli, "--dataset-stock-csv", raw, "--max-row-limit", TINY_PARAMS["max_row_limit"]
        )
    )
    logged = [log_known_model(prepared, scaled_return) for scaled_return in (WORSE, BETTER, 2 * WORSE)]
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
