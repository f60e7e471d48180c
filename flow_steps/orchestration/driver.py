"""The pipeline driver: one parent MLflow run, one child run per step, finished steps reused.

Each step's output reaches the next as a logged artifact URI:
download_raw_data -> raw-data/<TICKER>.csv -> transform_data -> transformed-data/prices.csv -> train_model
-> runs:/<run id>/model -> register_model (Model Registry: stock-<TICKER>-lstm, aliases challenger/champion).
"""

from __future__ import annotations

import logging
import time

from mlflow.entities import Run, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from flow_steps.config.declarations import (
    COMPANY_ABBREVIATION,
    CRASH_RETRIES,
    DOWNLOAD_PARAMS,
    PROMOTION_PARAMS,
    TRAIN_PARAMS,
    TRANSFORM_PARAMS,
)
from flow_steps.config.entry_points import BY_ENTRY_POINT
from flow_steps.config.names import (
    ALREADY_REGISTERED,
    CHAMPION_ALIAS,
    DATA_FINDING_TAGS,
    DOWNLOAD_STEP,
    HEADLINE_METRICS,
    MAIN_ENTRY_POINT,
    MODEL_ARTIFACT,
    REGISTER_STEP,
    ROWS_OUT_METRIC,
    TAG_CHAMPION_VERSION,
    TAG_MODEL_URI,
    TAG_MODEL_VERSION,
    TAG_PROMOTION,
    TAG_REGISTERED_MODEL,
    TAG_UNIVERSE_RUN_ID,
    TRAIN_STEP,
    TRANSFORM_STEP,
    TRANSFORMED_DATA_PATH,
    raw_data_path,
    registered_model_name,
)
from flow_steps.config.spec import Param
from flow_steps.data.tickers import normalize_ticker
from flow_steps.deployment.versions import alias_version_number, versions_of_run
from flow_steps.model.features import check_enough_rows
from flow_steps.orchestration.reuse import download_reuse_tags
from flow_steps.orchestration.steps import StepRunner
from flow_steps.runtime.interruption import close_orphaned_runs
from flow_steps.runtime.lifecycle import refusals_explained, tracked_run
from flow_steps.runtime.lineage import code_version
from flow_steps.runtime.tracking import experiment_label, run_name_unless_chosen

logger = logging.getLogger(__name__)

LONG_VALUE = 24  # characters; a longer value (a path, a URL) is named by its last part in run names


def describe_run(params: dict[str, str]) -> str:
    """`MSFT lstm_units=60`: the ticker and each parameter that is not its default (or `MSFT defaults`)."""
    changed = [
        f"{param.name}={_short(params[param.name])}"
        for param in BY_ENTRY_POINT[MAIN_ENTRY_POINT].params
        if param is not COMPANY_ABBREVIATION
        and param.name in params
        and params[param.name] != param.text(param.default)
    ]
    return " ".join([normalize_ticker(params[COMPANY_ABBREVIATION.name]), *(changed or ["defaults"])])


def parent_run_name(given: str | None, params: dict[str, str]) -> str | None:
    """The name to give the pipeline's run; None keeps the one `mlflow run --run-name` set.

    A name the user gives wins. Under `mlflow run` the run already exists: a name MLflow made up is
    replaced, a chosen one is kept.
    """
    return given or run_name_unless_chosen(describe_run(params))


def _short(value: str) -> str:
    return value if len(value) <= LONG_VALUE else value.rstrip("/").rsplit("/", 1)[-1][-LONG_VALUE:]


def run_pipeline(
    params: dict[str, str],
    reuse_training: bool = False,
    register_model: bool = True,
    run_name: str | None = None,
    universe_run_id: str | None = None,
    backend: str = "local",
    crash_retries: int = CRASH_RETRIES.default,
    nested: bool = False,
    model_name: str | None = None,
) -> Run:
    """Run (or reuse) the steps under one parent run; returns the train run.

    `params` holds every step parameter (names as in MLproject) as strings. With `register_model`,
    the trained model is registered and promoted to champion when it beats the current one. The
    parent run is named `run_name`, else after what differs from the defaults (`describe_run`); it is
    a child of `universe_run_id` when a universe runs it. `backend` is the MLflow project backend of the
    steps: `local` (a process each) or `in-process` (in this process: a universe's workers). With the
    local backend, a step whose process crashed (orchestration/crashes.py) runs again, up to
    `crash_retries` times. `nested`: a child of the active run (a replay's); `model_name` registers
    under another name than the ticker's (a replay's own registry history).
    """
    own_params = {
        **params,
        "reuse_training": str(reuse_training).lower(),
        "register_model": str(register_model).lower(),
        CRASH_RETRIES.name: str(crash_retries),
    }
    part_of = {MLFLOW_PARENT_RUN_ID: universe_run_id, TAG_UNIVERSE_RUN_ID: universe_run_id}
    with tracked_run(
        parent_run_name(run_name, own_params), own_params, part_of if universe_run_id else None, nested=nested
    ) as parent:
        started = time.perf_counter()
        ticker = normalize_ticker(params[COMPANY_ABBREVIATION.name])
        steps = StepRunner(MlflowClient(), parent, code_version(), ticker, backend, crash_retries)
        with refusals_explained(f"write runs to {experiment_label()}", "EDIT"):
            close_orphaned_runs(steps.client, parent.info.experiment_id)
        train, stock_data = _run_steps(steps, params, reuse_training)
        # The train step's record, its headline metrics and the model's URI: one request.
        steps.note({TAG_MODEL_URI: f"runs:/{train.info.run_id}/{MODEL_ARTIFACT}"})
        metrics = train.data.metrics
        steps.write({name: metrics[name] for name in HEADLINE_METRICS if name in metrics})
        logger.info("Model: runs:/%s/%s", train.info.run_id, MODEL_ARTIFACT)
        if register_model:
            _register(steps, train, stock_data, params, model_name)
        steps.write({"pipeline_seconds": time.perf_counter() - started})  # with the registration's tags
        return train


def _register(
    steps: StepRunner, train: Run, stock_data: str, params: dict[str, str], model_name: str | None = None
) -> None:
    """Run register_model on the trained model and copy its outcome onto the parent run.

    Registration runs every time (the registry may have changed since), except for a reused training
    run that is already a registered version: then its earlier registration is reused, as decided then.
    """
    model_name = model_name or registered_model_name(normalize_ticker(params["company_abbreviation"]))
    already_registered = steps.reused.get(TRAIN_STEP, False) and bool(
        versions_of_run(steps.client, model_name, train.info.run_id)
    )
    registration = steps.run(
        REGISTER_STEP,
        {
            "model_uri": f"runs:/{train.info.run_id}/{MODEL_ARTIFACT}",
            "stock_data": stock_data,
            "test_fraction": params["test_fraction"],
            "model_name": model_name,
            **_values(PROMOTION_PARAMS, params),
        },
        {} if already_registered else None,
        write=False,
    )
    outcome = dict(registration.data.tags)
    if steps.reused[REGISTER_STEP]:  # as registered then; the champion as it is now
        outcome[TAG_PROMOTION] = ALREADY_REGISTERED
        outcome[TAG_CHAMPION_VERSION] = alias_version_number(steps.client, model_name, CHAMPION_ALIAS)
    steps.note(  # written with the pipeline's seconds
        {
            name: outcome[name]
            for name in (TAG_REGISTERED_MODEL, TAG_MODEL_VERSION, TAG_CHAMPION_VERSION, TAG_PROMOTION)
        }
    )
    logger.info(
        "Registered %s version %s (%s); champion: version %s",
        outcome[TAG_REGISTERED_MODEL],
        outcome[TAG_MODEL_VERSION],
        outcome[TAG_PROMOTION],
        outcome[TAG_CHAMPION_VERSION],
    )


def _run_steps(steps: StepRunner, params: dict[str, str], reuse_training: bool) -> tuple[Run, str]:
    """Run or reuse download, transform and train; returns the train run and its prices' URI."""
    download = steps.run(
        DOWNLOAD_STEP,
        _values(DOWNLOAD_PARAMS, params),
        download_reuse_tags(params["data_source"]),
    )
    ticker = normalize_ticker(params["company_abbreviation"])
    transform = steps.run(
        TRANSFORM_STEP,
        {
            "dataset_stock_csv": f"{download.info.artifact_uri}/{raw_data_path(ticker)}",
            **_values(TRANSFORM_PARAMS, params),
        },
        {},
    )
    stock_data = f"{transform.info.artifact_uri}/{TRANSFORMED_DATA_PATH}"
    if ROWS_OUT_METRIC in transform.data.metrics:  # too short: refused here, before TensorFlow starts
        rows = int(transform.data.metrics[ROWS_OUT_METRIC])
        check_enough_rows(rows, int(params["window"]), float(params["test_fraction"]))
    train = steps.run(
        TRAIN_STEP,
        {"stock_data": stock_data, **_values(TRAIN_PARAMS, params)},
        {} if reuse_training else None,
        write=False,  # with the pipeline's headline metrics (run_pipeline)
    )
    findings = [
        RunTag(name, download.data.tags[name]) for name in DATA_FINDING_TAGS if name in download.data.tags
    ]
    if findings:  # the model learnt from such prices: say so where it is looked at
        steps.client.log_batch(train.info.run_id, tags=findings)
        steps.note({tag.key: tag.value for tag in findings})
    return train, stock_data


def _values(spec: tuple[Param, ...], params: dict[str, str]) -> dict[str, str]:
    """The values of one step's parameters, picked from all of the pipeline's."""
    return {param.name: params[param.name] for param in spec}
