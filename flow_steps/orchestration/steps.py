"""Running one step of the pipeline, or reusing a finished run of it: the reuse rules and the child runs.

A step is reused when one `search_runs` call finds a FINISHED run with the same entry point, parameters,
code version and extra tags (`reuse_filter`); a downloaded file only while its source cannot have
changed (`download_reuse_tags`). Otherwise the step runs as a child run, through `mlflow.run`.
"""

from __future__ import annotations

import logging

import mlflow
from mlflow.entities import Run, RunTag
from mlflow.exceptions import ExecutionException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_PROJECT_ENTRY_POINT

from flow_steps.config.errors import PipelineError, SourceError, one_line
from flow_steps.config.names import (
    PROJECT_ROOT,
    TAG_CHILD_RUN_PREFIX,
    TAG_CODE_VERSION,
    TAG_ERROR,
    TAG_REUSED_PREFIX,
)
from flow_steps.data.sources import source_for
from flow_steps.orchestration.in_process import BACKEND as IN_PROCESS_BACKEND
from flow_steps.runtime.interruption import KILLED
from flow_steps.runtime.outages import CLOSING_SECONDS, retrying_for, tried_briefly

logger = logging.getLogger(__name__)


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
    """Extra tags a reusable download run must carry, as its source says, or None when the source may
    have changed (or names nothing: the download step then refuses it in one line)."""
    try:
        source = source_for(data_source)
    except SourceError:
        return None
    return source.reuse_tags(data_source)


class StepRunner:
    """Runs pipeline steps as child runs of the active run, reusing finished ones."""

    def __init__(self, client: MlflowClient, parent: Run, version: str, ticker: str, backend: str = "local"):
        self.client = client
        self.parent = parent
        self.version = version
        self.ticker = ticker
        self.backend = backend  # MLflow's project backend: "local" (a process per step) or "in-process"
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
                backend=self.backend,
                # The in-process backend returns once the step has ended its run. MLflow's wait would
                # read the run twice more and, comparing its status text with status numbers, end it
                # a second time (4 requests a step).
                synchronous=self.backend != IN_PROCESS_BACKEND,
            )
            if not submitted.wait():
                raise ExecutionException(f"Run (ID '{submitted.run_id}') failed")
        except ExecutionException as error:
            # MLflow has marked the step's run FAILED unless the step did; its reason is read briefly:
            # after an outage the step outlasted, the next call here is the one-line outage error.
            with retrying_for(CLOSING_SECONDS):
                reason = self._failure_reason(entry_point, error)
            raise PipelineError(f"step {entry_point} failed: {reason}") from error
        except KeyboardInterrupt:
            # MLflow has sent the step SIGTERM and waited for it; the step ends its run KILLED, and
            # MLflow marks it FAILED only if it died before it could: that is KILLED too.
            tried_briefly(f"mark the {entry_point} run KILLED", lambda: self._end_killed(entry_point))
            raise
        child = self.client.get_run(submitted.run_id)
        self._record(entry_point, child, reused=False)
        return child

    def _record(self, entry_point: str, child: Run, reused: bool) -> None:
        self.reused[entry_point] = reused
        tags = {
            TAG_CHILD_RUN_PREFIX + entry_point: child.info.run_id,
            TAG_REUSED_PREFIX + entry_point: str(reused).lower(),
        }
        self.client.log_batch(
            self.parent.info.run_id, tags=[RunTag(name, value) for name, value in tags.items()]
        )

    def _end_killed(self, entry_point: str) -> None:
        if (step := self._latest_child(entry_point)) and step.info.status != KILLED:
            self.client.set_terminated(step.info.run_id, KILLED)

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


def _quote(value: str) -> str:
    return f"'{value}'"
