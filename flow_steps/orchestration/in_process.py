"""The `in-process` MLflow project backend: `mlflow.run` of a step inside the calling process.

`mlflow.run(..., backend="in-process")` (registered under MLflow's `mlflow.project_backend` entry points in
pyproject.toml) creates the step's run exactly as the local backend does (MLflow's own
`get_or_create_run`: the same tags and logged params, path parameters downloaded the same way), builds the
same command line from MLproject, and hands it to the step's own click command in this process, which
runs the step's work in that run, nested under the active one (`lifecycle.run_step`); the step has
ended its run when `run` returns (a step refused before its work began is ended FAILED here), so
`mlflow.run` need not wait (`synchronous=False`, orchestration/steps.py). The run's name comes in
`backend_config[RUN_NAME]` and is given as the step resumes its run (in the request that marks it
RUNNING), not by `mlflow.run`'s tag once the step has ended: one request less a step. A universe's
long-lived workers use it: TensorFlow, MLflow and the store are imported once per worker instead of five
times per ticker. The steps' code is the same in both backends.
"""

from __future__ import annotations

import importlib
import logging
import shlex
import tempfile

import click
from mlflow.entities import RunStatus
from mlflow.projects.backend.abstract_backend import AbstractBackend
from mlflow.projects.submitted_run import SubmittedRun
from mlflow.projects.utils import (
    PROJECT_STORAGE_DIR,
    fetch_and_validate_project,
    get_entry_point_command,
    get_or_create_run,
    load_project,
)
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

from flow_steps.config.errors import PipelineError, one_line
from flow_steps.runtime.lifecycle import continuing_run

logger = logging.getLogger(__name__)

BACKEND = "in-process"
RUN_NAME = "run_name"  # the key of backend_config that names the step's run


class DoneRun(SubmittedRun):
    """A step that has already run in this process: its run id and whether it succeeded."""

    def __init__(self, run_id: str, succeeded: bool):
        super().__init__()
        self._run_id = run_id
        self._succeeded = succeeded

    @property
    def run_id(self) -> str:
        return self._run_id

    def wait(self) -> bool:
        return self._succeeded

    def get_status(self) -> str:
        return RunStatus.to_string(RunStatus.FINISHED if self._succeeded else RunStatus.FAILED)

    def cancel(self) -> None:
        """Nothing to cancel: the step ran to its end before `mlflow.run` returned."""


def step_arguments(command: str) -> tuple[str, list[str]]:
    """`python -m flow_steps.train_model --epochs 5 ...` -> (`flow_steps.train_model`, its options)."""
    words = shlex.split(command)
    if words[:2] != ["python", "-m"] or len(words) < 3:
        raise PipelineError(f"the in-process backend runs `python -m <module>` commands, not: {command}")
    return words[2], words[3:]


def run_here(module: str, arguments: list[str], run_id: str, run_name: str | None = None) -> bool:
    """Run the step `module` with `arguments` through its click command in run `run_id` (named `run_name`
    as it resumes it, unless None); whether it succeeded. A failure is logged in one line, as the step's
    process would (its run is FAILED with the reason in its `error` tag); an interruption propagates (its
    run is KILLED)."""
    command = importlib.import_module(module).cli
    label = module.rsplit(".", 1)[-1]
    try:
        with continuing_run(run_id, run_name):
            command.main(arguments, prog_name=module, standalone_mode=False)
    except PipelineError as error:
        logger.error("%s failed: %s", label, one_line(error))
        return False
    except click.ClickException as error:  # format_message names the option, as click's own line does
        logger.error("%s failed: %s", label, one_line(error.format_message()))
        return False
    return True


class InProcessBackend(AbstractBackend):
    """MLflow project backend that runs an entry point's command in this process (see the module)."""

    def run(
        self,
        project_uri,
        entry_point,
        params,
        version,
        backend_config,
        tracking_uri,
        experiment_id,
    ) -> DoneRun:
        work_dir = fetch_and_validate_project(project_uri, version, entry_point, params)
        project = load_project(work_dir)
        run = get_or_create_run(None, project_uri, experiment_id, work_dir, version, entry_point, params)
        # Path parameters are downloaded here, and removed with the step: a worker lives for many tickers.
        with tempfile.TemporaryDirectory(dir=backend_config.get(PROJECT_STORAGE_DIR)) as downloads:
            [command] = get_entry_point_command(project, entry_point, params, downloads)
            module, arguments = step_arguments(command)
            succeeded = run_here(module, arguments, run.info.run_id, backend_config.get(RUN_NAME))
        if not succeeded:
            end_failed_unless_ended(run.info.run_id, backend_config.get(RUN_NAME))
        return DoneRun(run.info.run_id, succeeded)


def end_failed_unless_ended(run_id: str, run_name: str | None = None) -> None:
    """End run `run_id` FAILED if the step did not end it (refused before its work began: a bad option),
    as MLflow's wait for a step's process does, and name it `run_name` if it was not (refused before it
    resumed its run); `mlflow.run` does not wait for this backend's runs."""
    client = MlflowClient()
    run = client.get_run(run_id)
    if run_name is not None and run.info.run_name != run_name:
        client.set_tag(run_id, MLFLOW_RUN_NAME, run_name)
    if run.info.status == RunStatus.to_string(RunStatus.RUNNING):
        client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
