"""The searches benchmarks/history.py times: every query the pipeline, forecast, monitor, the registration
and the orphan sweep make, with the pipeline's own filters, and the calls `mlflow ui` makes for its
experiment and model pages. Each takes an MlflowClient (the team server's, or a database's for --explain).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import mlflow
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_PROJECT_ENTRY_POINT

from flow_steps.config.entry_points import BY_ENTRY_POINT
from flow_steps.config.names import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    DEFAULT_EXPERIMENT,
    DOWNLOAD_STEP,
    TRAIN_STEP,
    TRANSFORM_STEP,
)
from flow_steps.deployment.realized import forecast_runs
from flow_steps.deployment.versions import alias_version, versions_of_run
from flow_steps.orchestration.reuse import find_reusable

RUN_ID = re.compile(r"[0-9a-f]{32}")
UI_PAGE = 100  # the experiment page's first page of runs (MLflow's UI asks for 100, newest first)
UI_MODELS = 25  # the model list's first page


@dataclass
class Target:
    """One ticker's newest pipeline in the history: what the next pipeline of that ticker searches for."""

    experiment: str  # the pipeline's experiment
    schedule_experiment: str  # forecast and monitor runs'
    ticker: str
    model: str
    code_version: str
    params: dict[str, dict[str, str]]  # by step: the newest run's params
    parent_run_id: str
    train_run_id: str


def find_target(client: MlflowClient, ticker: str, schedule_experiment: str = "Default") -> Target:
    """The ticker's newest pipeline: its steps' params, as the next day's look-ups start from them."""
    experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
    schedule = client.get_experiment_by_name(schedule_experiment).experiment_id
    [parent] = client.search_runs(
        [experiment],
        f"params.company_abbreviation = '{ticker}' and params.register_model = 'true'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    steps = client.search_runs([experiment], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent.info.run_id}'")
    by_step = {run.data.tags[MLFLOW_PROJECT_ENTRY_POINT]: run for run in steps}
    return Target(
        experiment=experiment,
        schedule_experiment=schedule,
        ticker=ticker,
        model=parent.data.tags["registered_model"],
        code_version=parent.data.tags["code_version"],
        params={step: declared_params(step, run.data.params) for step, run in by_step.items()},
        parent_run_id=parent.info.run_id,
        train_run_id=by_step[TRAIN_STEP].info.run_id,
    )


def declared_params(step: str, logged: dict[str, str]) -> dict[str, str]:
    """The step's own parameters among what its run logged (train_model logs more: its calibration and
    the like), as the driver passes them to the look-up."""
    return {param.name: logged[param.name] for param in BY_ENTRY_POINT[step].params if param.name in logged}


def next_day(params: dict[str, str], key: str) -> dict[str, str]:
    """The params of the next pipeline's look-up: `key` (its input, a new run's artifact) not seen yet."""
    return {**params, key: RUN_ID.sub("0" * 32, params[key])}


def look_up(client: MlflowClient, target: Target, step: str, params: dict[str, str]):
    """The reuse look-up of StepRunner.find_finished, the same function."""
    return find_reusable(client, target.experiment, step, params, target.code_version, {})


def queries(target: Target) -> dict[str, Callable[[MlflowClient], object]]:
    """Label -> the call, in the order a day's schedule makes them."""
    t = target
    download = {**t.params[DOWNLOAD_STEP], "as_of": "2099-01-01"}  # a new day: no run yet
    return {
        "forecast: champion alias": lambda c: alias_version(c, t.model, CHAMPION_ALIAS),
        "monitor: a page of a ticker's forecast runs": lambda c: next(
            forecast_runs(c, t.schedule_experiment, t.ticker), None
        ),
        # not one query: every page, as monitor reads them for a full window (a year of forecasts)
        "monitor: all of a ticker's forecast runs": lambda c: list(
            forecast_runs(c, t.schedule_experiment, t.ticker)
        ),
        "orphan sweep (RUNNING runs)": lambda c: c.search_runs(
            [t.experiment], "attributes.status = 'RUNNING'", max_results=1000
        ),
        "reuse look-up: download (file/sample)": lambda c: look_up(c, t, DOWNLOAD_STEP, download),
        "reuse look-up: transform": lambda c: look_up(
            c, t, TRANSFORM_STEP, next_day(t.params[TRANSFORM_STEP], "dataset_stock_csv")
        ),
        "reuse look-up: train (--reuse-training)": lambda c: look_up(
            c, t, TRAIN_STEP, next_day(t.params[TRAIN_STEP], "stock_data")
        ),
        "step runs of a pipeline": lambda c: c.search_runs(
            [t.experiment], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{t.parent_run_id}'", max_results=10000
        ),
        "registration: versions of a run": lambda c: versions_of_run(c, t.model, t.train_run_id),
        "registration: logged model of a run": lambda c: mlflow.search_logged_models(
            experiment_ids=[t.experiment],
            filter_string=f"source_run_id = '{t.train_run_id}' AND name = 'model'",
            output_format="list",
        ),
        "registration: challenger alias": lambda c: alias_version(c, t.model, CHALLENGER_ALIAS),
        "ui: experiment list": lambda c: c.search_experiments(max_results=UI_MODELS),
        "ui: pipeline experiment page": lambda c: c.search_runs(
            [t.experiment], "", ViewType.ACTIVE_ONLY, UI_PAGE, ["attributes.start_time DESC"]
        ),
        "ui: forecast experiment page": lambda c: c.search_runs(
            [t.schedule_experiment], "", ViewType.ACTIVE_ONLY, UI_PAGE, ["attributes.start_time DESC"]
        ),
        "ui: model list": lambda c: c.search_registered_models(max_results=UI_MODELS),
        "ui: model page (versions)": lambda c: c.search_model_versions(
            f"name = '{t.model}'", max_results=UI_PAGE
        ),
    }
