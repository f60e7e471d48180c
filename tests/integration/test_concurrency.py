"""Pipelines and registrations started at the same moment: none crashes, and promotion is right."""

from __future__ import annotations

import subprocess
import sys

import mlflow
from mlflow.entities import Param, Run, RunStatus
from mlflow.tracking import MlflowClient

from flow_steps.config.names import DOWNLOAD_STEP, REGISTER_STEP, TRAIN_STEP, TRANSFORM_STEP
from flow_steps.deployment.lock import lock_name
from tests.conftest import EXPERIMENT, PROJECT_ROOT, TINY_PARAMS, cli_options, run_command
from tests.support.helpers import clean_env, local_copy, prepared_prices
from tests.support.known_models import BETTER, WORSE, log_known_model
from tests.support.races import race_env

KNOWN = "known-rmse-race"


AUTO_NAME = "MSFT max_row_limit=300 lstm_units=8 window=10 epochs=1 register_model=false"


def test_three_pipelines_on_a_fresh_store_all_finish_and_a_fourth_reuses_their_data(tmp_path):
    """Three `python main.py` race to create a fresh store and all finish, to the same metrics (same
    parameters, same seed). A fourth, with --reuse-training, then reuses a download, a transform and a
    training they made (never a failed or killed run with the same parameters), launches no step, and
    keeps the name it is given."""
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"  # no tables yet: the three race to create them
    (tmp_path / "race").mkdir()
    # The three meet just before the store's lock, so they reach MLflow's migrations together.
    env = clean_env(MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME="concurrency-tests")
    racers = race_env(env, tmp_path / "race", parties=3)
    command = [sys.executable, "main.py", *cli_options(TINY_PARAMS)]
    pipelines = [
        subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=racers, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [pipeline.communicate(timeout=600) for pipeline in pipelines]
    for pipeline, (_, stderr) in zip(pipelines, outputs, strict=True):
        assert pipeline.returncode == 0, stderr[-3000:]

    assert len(list((tmp_path / "race").glob("prepare-store.*"))) >= 3  # they met before the lock
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("concurrency-tests").experiment_id

    def runs(filter_string: str = "") -> list[Run]:
        return client.search_runs([experiment_id], filter_string, max_results=1000)

    def of_step(step: str) -> list[Run]:
        return runs(f"tags.`mlflow.project.entryPoint` = '{step}'")

    parents = [run for run in runs() if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 3 and all(run.info.status == "FINISHED" for run in runs())
    assert {run.info.run_name for run in parents} == {AUTO_NAME}
    made = {step: {run.info.run_id for run in of_step(step)} for step in (DOWNLOAD_STEP, TRANSFORM_STEP)}
    trained = {run.data.metrics["test_rmse"] for run in of_step(TRAIN_STEP)}
    assert len(trained) == 1  # three trainings, same parameters and seed: the same model

    # A failed and a killed download with exactly the finished ones' parameters and tags, newer than them.
    template = client.get_run(next(iter(made[DOWNLOAD_STEP])))
    for status in (RunStatus.FAILED, RunStatus.KILLED):
        tags = {
            key: value for key, value in template.data.tags.items() if not key.startswith("mlflow.parent")
        }
        run = client.create_run(experiment_id, tags=tags)
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in template.data.params.items()])
        client.set_terminated(run.info.run_id, RunStatus.to_string(status))

    result = run_command([*command, "--run-name", "second try", "--reuse-training"], env)
    assert result.returncode == 0, result.stderr[-3000:]
    [fourth] = [run for run in runs() if run.info.run_name == "second try"]
    assert fourth.info.status == "FINISHED"
    tags = fourth.data.tags
    made[TRAIN_STEP] = {run.info.run_id for run in of_step(TRAIN_STEP)}
    for step in (DOWNLOAD_STEP, TRANSFORM_STEP, TRAIN_STEP):
        assert tags[f"reused_{step}"] == "true" and tags[f"run_id_{step}"] in made[step]
    # No step launched: reused runs stay with their makers.
    assert runs(f"tags.`mlflow.parentRunId` = '{fourth.info.run_id}'") == []
    assert fourth.data.metrics["test_rmse"] in trained
    # --register-model false: nothing registered.
    assert of_step(REGISTER_STEP) == [] and client.search_registered_models() == []
    assert fourth.data.params["register_model"] == "false"


def test_racing_registrations_of_known_models_promote_the_best_whatever_the_finishing_order(tracking):
    """Three challengers of known RMSE (worse, better, worst) registered by three processes at once: they
    meet before the promotion lock, and each holds the champion it read for a second before deciding,
    so that without the lock all three would see no champion and each become `first_version`."""
    mlflow.set_experiment(EXPERIMENT)
    _, prepared = prepared_prices(max_row_limit=TINY_PARAMS["max_row_limit"])
    prepared = local_copy(prepared)
    # Scored from their runs (no TensorFlow start-up per process): the decisions are what is tested here.
    logged = [log_known_model(prepared, c, as_trained=True) for c in (WORSE, BETTER, 2 * WORSE)]
    race = tracking.folder / "race"
    race.mkdir()
    registrations = [
        subprocess.Popen(
            [sys.executable, "-m", "flow_steps.register_model", "--model-uri", f"runs:/{run_id}/model"]
            + ["--stock-data", prepared, "--model-name", KNOWN],
            cwd=PROJECT_ROOT,
            env=race_env(tracking.env, race, parties=3, hold_seconds=1),
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
    assert len(list(race.glob("promotion-lock.*"))) == 3  # the three met before the lock
    assert sorted(version.tags["promotion"] for version in versions).count("first_version") == 1
    champion = tracking.client.get_model_version_by_alias(KNOWN, "champion")
    assert champion.run_id == best_run_id
    assert lock_name(KNOWN) not in {model.name for model in tracking.client.search_registered_models()}
