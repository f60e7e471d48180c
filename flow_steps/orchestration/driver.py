"""The pipeline driver: one parent MLflow run, one child run per step, finished steps reused.

Each step's output reaches the next as a logged artifact URI:
download_raw_data -> raw-data/<TICKER>.csv -> transform_data -> transformed-data/prices.csv -> train_model
-> runs:/<run id>/model -> register_model (Model Registry: stock-<TICKER>-lstm, aliases challenger/champion).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import ExecutionException, MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_PROJECT_ENTRY_POINT

from flow_steps.config.declarations import (
    COMPANY_ABBREVIATION,
    DOWNLOAD_PARAMS,
    TRAIN_PARAMS,
    TRANSFORM_PARAMS,
)
from flow_steps.config.entry_points import BY_ENTRY_POINT
from flow_steps.config.errors import PipelineError
from flow_steps.config.names import (
    ALREADY_REGISTERED,
    CHAMPION_ALIAS,
    DOWNLOAD_STEP,
    HEADLINE_METRICS,
    MAIN_ENTRY_POINT,
    MODEL_NAME,
    PROJECT_ROOT,
    REGISTER_STEP,
    ROWS_OUT_METRIC,
    SAMPLE_SOURCE,
    TAG_CHAMPION_VERSION,
    TAG_CHILD_RUN_PREFIX,
    TAG_CODE_VERSION,
    TAG_ERROR,
    TAG_MODEL_URI,
    TAG_MODEL_VERSION,
    TAG_PROMOTION,
    TAG_RAW_SHA256,
    TAG_REGISTERED_MODEL,
    TAG_REUSED_PREFIX,
    TAG_SUSPECT_MOVES,
    TAG_UNIVERSE_RUN_ID,
    TRAIN_STEP,
    TRANSFORM_STEP,
    TRANSFORMED_DATA_PATH,
    raw_data_path,
    registered_model_name,
)
from flow_steps.config.spec import Param
from flow_steps.data.masking import one_line
from flow_steps.data.tickers import normalize_ticker
from flow_steps.model.features import check_enough_rows
from flow_steps.runtime.interruption import KILLED, close_orphaned_runs, this_process
from flow_steps.runtime.lifecycle import end_run_killed, mark_training_experiment, refusals_explained
from flow_steps.runtime.lineage import code_version, sha256_bytes
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


def reuse_filter(entry_point: str, params: dict[str, str], version: str, tags: dict[str, str]) -> str:
    """MLflow search filter for a FINISHED run of `entry_point` with these params and code version."""
    clauses = [
        "attributes.status = 'FINISHED'",
        f"tags.`{MLFLOW_PROJECT_ENTRY_POINT}` = {_quote(entry_point)}",
        f"tags.{TAG_CODE_VERSION} = {_quote(version)}",
    ]
    clauses += [f"params.{name} = {_quote(value)}" for name, value in sorted(params.items())]
    clauses += [f"tags.{name} = {_quote(value)}" for name, value in sorted(tags.items())]
    return " and ".join(clauses)


def download_reuse_tags(data_source: str) -> dict[str, str] | None:
    """Extra tags a reusable download run must carry, or None when the source may have changed.

    The bundled sample is part of the code version; a local file is reused only while its
    content hash is unchanged. Anything else is fetched again.
    """
    if data_source == SAMPLE_SOURCE:
        return {}
    path = Path(data_source).expanduser()
    if "://" not in data_source and path.is_file():
        return {TAG_RAW_SHA256: sha256_bytes(path.read_bytes())}
    return None


class StepRunner:
    """Runs pipeline steps as child runs of the active run, reusing finished ones."""

    def __init__(self, client: MlflowClient, parent: Run, version: str, ticker: str):
        self.client = client
        self.parent = parent
        self.version = version
        self.ticker = ticker
        self.reused: dict[str, bool] = {}  # entry point -> whether its run was reused

    def find_finished(self, entry_point: str, params: dict[str, str], tags: dict[str, str]) -> Run | None:
        """The newest FINISHED run with the same entry point, params, code version and tags."""
        if any("'" in value for value in [*params.values(), *tags.values()]):
            return None  # not expressible in a filter string: run the step instead
        found = self.client.search_runs(
            experiment_ids=[self.parent.info.experiment_id],
            filter_string=reuse_filter(entry_point, params, self.version, tags),
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return found[0] if found else None

    def run(self, entry_point: str, params: dict[str, str], reuse_tags: dict[str, str] | None) -> Run:
        """Reuse a finished run when `reuse_tags` is not None and one matches, else launch the step."""
        if reuse_tags is not None and (previous := self.find_finished(entry_point, params, reuse_tags)):
            logger.info("Reusing %s run %s (same params and code version)", entry_point, previous.info.run_id)
            self._record(entry_point, previous, reused=True)
            return previous
        logger.info("Running %s with %s", entry_point, params)
        try:
            submitted = mlflow.run(
                str(PROJECT_ROOT),
                entry_point=entry_point,
                parameters=params,
                experiment_id=self.parent.info.experiment_id,
                run_name=f"{self.ticker} {entry_point}",
                env_manager="local",
            )
        except ExecutionException as error:
            reason = self._failure_reason(entry_point, error)
            raise PipelineError(f"step {entry_point} failed: {reason}") from error
        except KeyboardInterrupt:
            # MLflow has sent the step SIGTERM and waited for it; the step ends its run KILLED, and
            # MLflow marks it FAILED only if it died before it could: that is KILLED too.
            if (step := self._latest_child(entry_point)) and step.info.status != KILLED:
                self.client.set_terminated(step.info.run_id, KILLED)
            raise
        child = self.client.get_run(submitted.run_id)
        self._record(entry_point, child, reused=False)
        return child

    def _record(self, entry_point: str, child: Run, reused: bool) -> None:
        self.reused[entry_point] = reused
        self.client.set_tag(self.parent.info.run_id, TAG_CHILD_RUN_PREFIX + entry_point, child.info.run_id)
        self.client.set_tag(self.parent.info.run_id, TAG_REUSED_PREFIX + entry_point, str(reused).lower())

    def _latest_child(self, entry_point: str) -> Run | None:
        """The newest run of `entry_point` started under the parent run."""
        found = self.client.search_runs(
            experiment_ids=[self.parent.info.experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = {_quote(self.parent.info.run_id)} "
            f"and tags.`{MLFLOW_PROJECT_ENTRY_POINT}` = {_quote(entry_point)}",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return found[0] if found else None

    def _failure_reason(self, entry_point: str, error: Exception) -> str:
        """The failed child's own `error` tag when it set one, else MLflow's message."""
        failed = self._latest_child(entry_point)
        if failed and TAG_ERROR in failed.data.tags:
            return failed.data.tags[TAG_ERROR]
        return one_line(error)


def run_pipeline(
    params: dict[str, str],
    reuse_training: bool = False,
    register_model: bool = True,
    run_name: str | None = None,
    universe_run_id: str | None = None,
) -> Run:
    """Run (or reuse) the steps under one parent run; returns the train run.

    `params` holds every step parameter (names as in MLproject) as strings. With `register_model`,
    the trained model is registered and promoted to champion when it beats the current one. The
    parent run is named `run_name`, else after what differs from the defaults (`describe_run`); it is
    a child of `universe_run_id` when a universe runs it.
    """
    version = code_version()
    own_params = {
        **params,
        "reuse_training": str(reuse_training).lower(),
        "register_model": str(register_model).lower(),
    }
    with refusals_explained(f"write runs to {experiment_label()}", "EDIT"):
        part_of = {MLFLOW_PARENT_RUN_ID: universe_run_id, TAG_UNIVERSE_RUN_ID: universe_run_id}
        parent = mlflow.start_run(
            run_name=parent_run_name(run_name, own_params), tags=part_of if universe_run_id else None
        )
    with parent:
        started = time.perf_counter()
        ticker = normalize_ticker(params[COMPANY_ABBREVIATION.name])
        steps = StepRunner(MlflowClient(), parent, version, ticker)
        try:
            with refusals_explained(f"write runs to {experiment_label()}", "EDIT"):
                mark_training_experiment(parent.info.experiment_id)
                mlflow.set_tags({TAG_CODE_VERSION: version, **this_process().tags()})
                close_orphaned_runs(steps.client, parent.info.experiment_id)
                mlflow.log_params(
                    {key: value for key, value in own_params.items() if key not in parent.data.params}
                )
            train, stock_data = _run_steps(steps, params, reuse_training)
            mlflow.log_metrics(
                {name: train.data.metrics[name] for name in HEADLINE_METRICS if name in train.data.metrics}
            )
            mlflow.set_tag(TAG_MODEL_URI, f"runs:/{train.info.run_id}/{MODEL_NAME}")
            logger.info("Model: runs:/%s/%s", train.info.run_id, MODEL_NAME)
            if register_model:
                _register(steps, train, stock_data, params)
        except PipelineError as error:
            mlflow.set_tag(TAG_ERROR, one_line(error))
            raise
        except KeyboardInterrupt as error:
            end_run_killed(error)
            raise
        mlflow.log_metric("pipeline_seconds", time.perf_counter() - started)
        return train


def _register(steps: StepRunner, train: Run, stock_data: str, params: dict[str, str]) -> None:
    """Run register_model on the trained model and copy its outcome onto the parent run.

    Registration runs every time (the registry may have changed since), except for a reused training
    run that is already a registered version: then its earlier registration is reused, as decided then.
    """
    ticker = normalize_ticker(params["company_abbreviation"])
    model_name = registered_model_name(ticker)
    already_registered = steps.reused.get(TRAIN_STEP, False) and bool(
        steps.client.search_model_versions(f"name = '{model_name}' and run_id = '{train.info.run_id}'")
    )
    registration = steps.run(
        REGISTER_STEP,
        {
            "model_uri": f"runs:/{train.info.run_id}/{MODEL_NAME}",
            "stock_data": stock_data,
            "test_fraction": params["test_fraction"],
            "model_name": model_name,
        },
        {} if already_registered else None,
    )
    outcome = dict(registration.data.tags)
    if steps.reused[REGISTER_STEP]:  # as registered then; the champion as it is now
        outcome[TAG_PROMOTION] = ALREADY_REGISTERED
        outcome[TAG_CHAMPION_VERSION] = _champion_version(steps.client, model_name)
    mlflow.set_tags(
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


def _champion_version(client: MlflowClient, model_name: str) -> str:
    try:
        return str(client.get_model_version_by_alias(model_name, CHAMPION_ALIAS).version)
    except MlflowException:
        return ""


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
    )
    if TAG_SUSPECT_MOVES in download.data.tags:  # the model learnt from them: say so where it is looked at
        for run_id in (train.info.run_id, steps.parent.info.run_id):
            steps.client.set_tag(run_id, TAG_SUSPECT_MOVES, download.data.tags[TAG_SUSPECT_MOVES])
    return train, stock_data


def _values(spec: tuple[Param, ...], params: dict[str, str]) -> dict[str, str]:
    """The values of one step's parameters, picked from all of the pipeline's."""
    return {param.name: params[param.name] for param in spec}


def _quote(value: str) -> str:
    return f"'{value}'"
