"""A generated history (deploy/history.py) on a real team server reads back through MLflow's client as a
real pipeline's runs do, and the pipeline's own searches find it."""

from __future__ import annotations

import sys
from datetime import date

import pytest
from mlflow.tracking import MlflowClient

from deploy.history import generate
from deploy.local_postgres import DB_PASSWORD
from deploy.local_team import ADMIN
from flow_steps.config.names import (
    DEFAULT_EXPERIMENT,
    DOWNLOAD_STEP,
    FORECAST_TICKER_TAG_PREFIX,
    PIPELINE_STEPS,
    REGISTER_STEP,
    TRAIN_STEP,
    TRANSFORM_STEP,
)
from flow_steps.deployment.realized import forecast_runs
from flow_steps.deployment.versions import alias_version_number, versions_of_run
from flow_steps.orchestration.reuse import find_reusable
from flow_steps.runtime.interruption import close_orphaned_runs
from tests.conftest import TINY_PARAMS, cli_options, run_command
from tests.support.helpers import clean_env
from tests.support.history import admin, started_team

pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("test_history")]
END = date(2026, 12, 4)
# Keys whose presence depends on the machine, not on what the pipeline writes: MLflow tags a run with
# its git branch only when a branch is checked out (none in a detached HEAD); the generator always does.
# Tags MLflow writes only in some checkouts: the branch (not on a detached HEAD), the remote's URL (a
# clone has one, as CI's has; a fresh `git init` or a worktree of one has none).
MACHINE_KEYS = {"mlflow.source.git.branch", "mlflow.source.git.repoURL"}


def ticker_blind(key: str) -> str:
    """A tag key with its ticker left out (a forecast run's forecast_ticker.MSFT), as tickers differ."""
    return FORECAST_TICKER_TAG_PREFIX + "<ticker>" if key.startswith(FORECAST_TICKER_TAG_PREFIX) else key


def shape(client: MlflowClient, run) -> dict:
    """What a run is made of, values aside: param, tag and metric keys, which metrics have a history of
    consecutive steps, its dataset inputs' contexts."""
    histories = {
        key: [metric.step for metric in client.get_metric_history(run.info.run_id, key)]
        for key in run.data.metrics
    }
    return {
        "params": sorted(run.data.params),
        "tags": sorted(ticker_blind(key) for key in set(run.data.tags) - MACHINE_KEYS),
        "metrics": sorted(run.data.metrics),
        "steps consecutive": all(steps == list(range(len(steps))) for steps in histories.values()),
        "inputs": sorted(
            (tag.value for dataset in run.inputs.dataset_inputs for tag in dataset.tags),
        ),
        "status": run.info.status,
        "artifact root": run.info.artifact_uri.split(run.info.run_id)[0],
    }


def pipeline(client: MlflowClient, experiment_id: str, ticker: str) -> dict[str, object]:
    """A ticker's first pipeline: its parent and steps by entry point."""
    [parent] = client.search_runs(
        [experiment_id], f"params.company_abbreviation = '{ticker}' and params.register_model = 'true'"
    )
    steps = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return {"parent": parent, **{run.data.tags["mlflow.project.entryPoint"]: run for run in steps}}


def test_a_generated_history_reads_back_as_a_real_pipeline_forecast_and_monitor_wrote(monkeypatch):
    with started_team() as server, admin(monkeypatch):
        env = clean_env(MLFLOW_TRACKING_URI=server.url)
        env.update(MLFLOW_TRACKING_USERNAME=ADMIN[0], MLFLOW_TRACKING_PASSWORD=ADMIN[1])
        params = {**TINY_PARAMS, "register_model": "true"}
        commands = [
            ["main.py", *cli_options(params)],
            ["-m", "flow_steps.forecast", "--horizon", "5", "--as-of", "2013-01-02"],
            ["-m", "flow_steps.monitor", "--as-of", "2013-01-10"],
        ]
        for command in commands:
            result = run_command([sys.executable, *command], env, timeout=400)
            assert result.returncode == 0, result.stderr[-3000:]
        monkeypatch.setenv("PGPASSWORD", DB_PASSWORD)
        assert (
            generate(server.cluster.uri("mlflow"), days=3, tickers=4, retrain_every=10, end=END, seed=1) == 36
        )

        client = MlflowClient(server.url)
        experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
        real, generated = pipeline(client, experiment, "MSFT"), pipeline(client, experiment, "T0001")
        assert set(real) == set(generated) == {"parent", *PIPELINE_STEPS}
        for kind in real:
            assert shape(client, generated[kind]) == shape(client, real[kind]), kind
        assert generated[TRAIN_STEP].info.run_name == f"T0001 {TRAIN_STEP}"
        losses = client.get_metric_history(generated[TRAIN_STEP].info.run_id, "train_loss")
        assert len(losses) == 30  # the generator's epochs; the real run's 1 (TINY_PARAMS)

        # forecast and monitor runs, in the Default experiment as deploy/daily.sh leaves them
        for name in ("forecast", "monitor"):
            [real_run] = [run for run in client.search_runs(["0"], f"attributes.run_name = '{name}'")
                          if run.data.params["company_abbreviation"] == "MSFT"]  # fmt: skip
            [generated_run, _] = client.search_runs(
                ["0"], f"attributes.run_name = '{name}' and params.company_abbreviation = 'T0001'"
            )
            assert shape(client, generated_run) == shape(client, real_run), name

        # the registry: a version, its tags and aliases, its logged model
        real_version = client.get_model_version_by_alias("stock-MSFT-lstm", "champion")
        version = client.get_model_version_by_alias("stock-T0001-lstm", "champion")
        assert sorted(version.tags) == sorted(real_version.tags)
        assert set(version.aliases) == set(real_version.aliases) == {"champion", "challenger"}
        assert version.run_id == generated[TRAIN_STEP].info.run_id
        assert version.source.startswith("models:/m-") and real_version.source.startswith("models:/m-")
        models = {}
        for kind, run in (("real", real[TRAIN_STEP]), ("generated", generated[TRAIN_STEP])):
            [logged] = client.search_logged_models(
                [experiment], filter_string=f"source_run_id = '{run.info.run_id}'"
            )
            models[kind] = (logged.name, sorted(logged.params), sorted(set(logged.tags) - MACHINE_KEYS))
        assert models["generated"] == models["real"]

        # the pipeline's own searches find the generated runs
        code_version = generated[TRAIN_STEP].data.tags["code_version"]
        for step in (TRANSFORM_STEP, TRAIN_STEP, REGISTER_STEP, DOWNLOAD_STEP):
            run = generated[step]
            found = find_reusable(client, experiment, step, run.data.params, code_version, {})
            assert found.info.run_id == run.info.run_id, step
        found = forecast_runs(client, "0", "T0001")
        assert [run.data.tags["as_of_utc"][:10] for run in found] == ["2026-12-04", "2026-12-03"]
        assert close_orphaned_runs(client, experiment) == []
        [registered] = versions_of_run(client, "stock-T0001-lstm", generated[TRAIN_STEP].info.run_id)
        assert (
            registered.version == "1" and alias_version_number(client, "stock-T0001-lstm", "champion") == "1"
        )
