"""Running one step of the pipeline, or reusing a finished run of it: the reuse rules and the child runs.

A step is reused when one `search_runs` call finds a FINISHED run with the same entry point, parameters,
code version and extra tags (`reuse_filter`); a downloaded file only while its source cannot have
changed (`download_reuse_tags`). Otherwise the step runs as a child run: in its own process, started as
MLflow's local backend does (processes.py), and run again when that process crashed (crashes.py); or, in
a universe's worker, through `mlflow.run` with the in-process backend.
"""

from __future__ import annotations

import logging
import signal

import mlflow
from mlflow.entities import Run, RunStatus, RunTag
from mlflow.exceptions import ExecutionException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_PROJECT_ENTRY_POINT

from flow_steps.config.declarations import CRASH_RETRIES
from flow_steps.config.errors import PipelineError, SourceError, one_line
from flow_steps.config.names import (
    PROJECT_ROOT,
    TAG_CHILD_RUN_PREFIX,
    TAG_CODE_VERSION,
    TAG_CRASH_RETRIES,
    TAG_ERROR,
    TAG_REUSED_PREFIX,
)
from flow_steps.data.sources import source_for
from flow_steps.orchestration.crashes import (
    StepCrashed,
    death_message,
    death_signal,
    is_crash,
    last_logged,
    retries_tag,
    should_retry,
)
from flow_steps.orchestration.in_process import BACKEND as IN_PROCESS_BACKEND
from flow_steps.orchestration.processes import StepProcess, launch
from flow_steps.runtime.interruption import FAILED, KILLED
from flow_steps.runtime.outages import CLOSING_SECONDS, retrying_for, tried_briefly

logger = logging.getLogger(__name__)

RUNNING = RunStatus.to_string(RunStatus.RUNNING)
FINISHED = RunStatus.to_string(RunStatus.FINISHED)


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
    """Runs pipeline steps as child runs of the active run, reusing finished ones; a step whose process
    crashed runs again, up to `crash_retries` times."""

    def __init__(
        self,
        client: MlflowClient,
        parent: Run,
        version: str,
        ticker: str,
        backend: str = "local",
        crash_retries: int = CRASH_RETRIES.default,
    ):
        self.client = client
        self.parent = parent
        self.version = version
        self.ticker = ticker
        self.backend = backend  # MLflow's project backend: "local" (a process per step) or "in-process"
        self.crash_retries = crash_retries
        self.reused: dict[str, bool] = {}  # entry point -> whether its run was reused
        self.retried: list[tuple[str, signal.Signals]] = []  # (entry point, signal) of each crash retried

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
        child = self.client.get_run(self._run_again_after_crashes(entry_point, params))
        self._record(entry_point, child, reused=False)
        return child

    def _run_again_after_crashes(self, entry_point: str, params: dict[str, str]) -> str:
        """Run the step; when its process crashes (crashes.py), again, up to `crash_retries` times, each
        retry recorded on the parent run. The id of the run that succeeded."""
        for attempt in range(1, self.crash_retries + 2):
            logger.info("Running %s with %s", entry_point, params)
            try:
                return self._run_once(entry_point, params, attempt)
            except StepCrashed as crash:
                if not should_retry(attempt, self.crash_retries):
                    raise PipelineError(str(crash)) from None
                self.retried.append((entry_point, crash.signal))
                self.client.set_tag(self.parent.info.run_id, TAG_CRASH_RETRIES, retries_tag(self.retried))
                logger.warning(
                    "%s: running %s again (retry %d of %d)", crash, entry_point, attempt, self.crash_retries
                )
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _run_once(self, entry_point: str, params: dict[str, str], attempt: int) -> str:
        """Run the step as a child run to its end; its run id. A process that died of a crash signal
        raises StepCrashed, any other failure a one-line PipelineError."""
        try:
            if self.backend == IN_PROCESS_BACKEND:
                return self._run_in_process(entry_point, params)
            step = launch(entry_point, params, self.parent.info.experiment_id, f"{self.ticker} {entry_point}")
            code = step.wait()
            if code != 0:
                # MLflow's wait would mark the run FAILED unless the step did; so do we, naming the signal
                # the process died of and what it last logged.
                with retrying_for(CLOSING_SECONDS):
                    self._end_failed(entry_point, step, code, attempt)
            return step.run_id
        except ExecutionException as error:
            # MLflow has marked the step's run FAILED unless the step did; its reason is read briefly:
            # after an outage the step outlasted, the next call here is the one-line outage error.
            with retrying_for(CLOSING_SECONDS):
                reason = self._failure_reason(entry_point, error)
            raise PipelineError(f"step {entry_point} failed: {reason}") from error
        except KeyboardInterrupt:
            # The step has been sent SIGTERM and waited for; it ends its run KILLED, and MLflow marks it
            # FAILED only if it died before it could: that is KILLED too.
            tried_briefly(f"mark the {entry_point} run KILLED", lambda: self._end_killed(entry_point))
            raise

    def _run_in_process(self, entry_point: str, params: dict[str, str]) -> str:
        """The step in this process (a universe's worker): a crash there ends the worker, not the step."""
        submitted = mlflow.run(
            str(PROJECT_ROOT),
            entry_point=entry_point,
            parameters=params,
            experiment_id=self.parent.info.experiment_id,
            run_name=f"{self.ticker} {entry_point}",
            env_manager="local",
            backend=self.backend,
            # The in-process backend returns once the step has ended its run. MLflow's wait would read
            # the run twice more and, comparing its status text with status numbers, end it a second
            # time (4 requests a step).
            synchronous=False,
        )
        if not submitted.wait():
            raise ExecutionException(f"Run (ID '{submitted.run_id}') failed")
        return submitted.run_id

    def _end_failed(self, entry_point: str, step: StepProcess, code: int, attempt: int) -> None:
        """End the run of a step whose process exited with `code` FAILED unless the step ended it; raise
        what happened: StepCrashed, a PipelineError naming another signal, or the step's own reason. A
        process that died of a signal after it had finished its run (TensorFlow's exit, say) leaves its
        work done and logged: the run is kept, with a warning."""
        run = self.client.get_run(step.run_id)
        received = death_signal(code)
        if received is None:
            if run.info.status == RUNNING:
                self.client.set_terminated(step.run_id, FAILED)
            raise ExecutionException(f"Run (ID '{step.run_id}') failed")
        message = death_message(entry_point, received, last_logged(step.stderr_tail()), attempt)
        if run.info.status == FINISHED:
            logger.warning("%s, after it had finished its run %s: the run is kept", message, step.run_id)
            return
        if run.info.status == RUNNING:
            self.client.set_tag(step.run_id, TAG_ERROR, message)
            self.client.set_terminated(step.run_id, FAILED)
        if is_crash(received):
            raise StepCrashed(message, received)
        raise PipelineError(f"step {entry_point} failed: {message}")

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
