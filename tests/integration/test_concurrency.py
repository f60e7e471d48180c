"""Pipelines started at the same moment on a fresh SQLite store: none crashes, and promotion is right."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from flow_steps.concurrency import lock_name
from tests.conftest import PROJECT_ROOT, TINY_PARAMS, cli_options

pytestmark = pytest.mark.integration

MODEL = "stock-MSFT-lstm"
UNITS = ("3", "6", "9")  # three different models, so that their RMSEs differ


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
