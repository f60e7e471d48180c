"""Running one step of the pipeline, or reusing a finished run of it (reuse.py's look-up): the child runs.

A step that is not reused runs as a child run, through `mlflow.run`; a step in its own process (the
local backend) names a file for its crash report, and one that crashed (crashes.py) runs again, up to
`crash_retries` times.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Run, RunStatus, RunTag
from mlflow.exceptions import ExecutionException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_PROJECT_ENTRY_POINT

from flow_steps.config.declarations import CRASH_RETRIES
from flow_steps.config.errors import PipelineError, one_line
from flow_steps.config.names import (
    PROJECT_ROOT,
    TAG_CHILD_RUN_PREFIX,
    TAG_CRASH_RETRIES,
    TAG_ERROR,
    TAG_REUSED_PREFIX,
)
from flow_steps.orchestration.crashes import (
    Crash,
    StepCrashed,
    crash_of,
    death_message,
    retries_tag,
    should_retry,
)
from flow_steps.orchestration.in_process import BACKEND as IN_PROCESS_BACKEND
from flow_steps.orchestration.in_process import RUN_NAME as IN_PROCESS_RUN_NAME
from flow_steps.orchestration.reuse import find_reusable, quoted
from flow_steps.runtime.interruption import FAILED, KILLED, end_children
from flow_steps.runtime.lifecycle import CRASH_REPORT_VARIABLE, LAST_LINE_SUFFIX
from flow_steps.runtime.outages import CLOSING_SECONDS, retrying_for, tried_briefly

logger = logging.getLogger(__name__)

FINISHED = RunStatus.to_string(RunStatus.FINISHED)
RUNNING = RunStatus.to_string(RunStatus.RUNNING)


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
        self._noted: dict[str, str] = {}  # tags for the parent run, written with the next `write`

    def find_finished(self, entry_point: str, params: dict[str, str], tags: dict[str, str]) -> Run | None:
        """The newest FINISHED run with the same entry point, params, code version and tags."""
        return find_reusable(
            self.client, self.parent.info.experiment_id, entry_point, params, self.version, tags
        )

    def run(
        self, entry_point: str, params: dict[str, str], reuse_tags: dict[str, str] | None, write: bool = True
    ) -> Run:
        """Reuse a finished run when `reuse_tags` is not None and one matches, else launch the step. The
        parent is tagged with the child's id and whether it was reused; not `write`: with the next
        `write`, together with what the caller notes meanwhile (one request instead of several)."""
        if reuse_tags is not None and (previous := self.find_finished(entry_point, params, reuse_tags)):
            logger.info("Reusing %s run %s (same params and code version)", entry_point, previous.info.run_id)
            child, reused = previous, True
        else:
            child, reused = self.client.get_run(self._run_until_no_crash(entry_point, params)), False
        self.reused[entry_point] = reused
        self.note(
            {
                TAG_CHILD_RUN_PREFIX + entry_point: child.info.run_id,
                TAG_REUSED_PREFIX + entry_point: str(reused).lower(),
            }
        )
        if write:
            self.write()
        return child

    def note(self, tags: dict[str, str]) -> None:
        """Tag the parent run with `tags` at the next `write`."""
        self._noted.update(tags)

    def write(self, metrics: dict[str, float] | None = None) -> None:
        """Write the tags noted for the parent run, and its `metrics` (step 0), in one request."""
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.parent.info.run_id,
            metrics=[Metric(name, value, now, 0) for name, value in (metrics or {}).items()],
            tags=[RunTag(name, value) for name, value in self._noted.items()],
        )
        self._noted = {}

    def _run_until_no_crash(self, entry_point: str, params: dict[str, str]) -> str:
        """Run the step; when its process crashes, again, up to `crash_retries` times, each retry recorded
        on the parent run. The id of the run that did not crash; the last crash as a PipelineError."""
        for attempt in range(1, self.crash_retries + 2):
            logger.info("Running %s with %s", entry_point, params)
            try:
                return self._run_once(entry_point, params, attempt)
            except StepCrashed as crashed:
                if not should_retry(attempt, self.crash_retries):
                    raise PipelineError(str(crashed)) from None
                self.retried.append((entry_point, crashed.crash.signal))
                self.client.set_tag(self.parent.info.run_id, TAG_CRASH_RETRIES, retries_tag(self.retried))
                logger.warning(
                    "%s: running %s again (retry %d of %d)", crashed, entry_point, attempt, self.crash_retries
                )
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _run_once(self, entry_point: str, params: dict[str, str], attempt: int) -> str:
        """The step as a child run through `mlflow.run`; its run id. A process that crashed raises
        StepCrashed, any other failure a one-line PipelineError."""
        try:
            if self.backend == IN_PROCESS_BACKEND:  # no process of its own: a crash ends the worker
                return self._submit(entry_point, params)
            with tempfile.TemporaryDirectory(prefix="flow-steps-crash-") as folder:
                report = Path(folder) / f"{entry_point}.report"
                try:
                    with _variable_set(CRASH_REPORT_VARIABLE, str(report)):
                        return self._submit(entry_point, params)
                except ExecutionException:
                    if (crash := read_crash(report)) is None:
                        raise
                    return self._crashed(entry_point, crash, attempt)
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

    def _submit(self, entry_point: str, params: dict[str, str]) -> str:
        """`mlflow.run` of the step, to its end; its run id, or ExecutionException when it failed."""
        run_name, in_process = f"{self.ticker} {entry_point}", self.backend == IN_PROCESS_BACKEND
        try:
            submitted = mlflow.run(
                str(PROJECT_ROOT),
                entry_point=entry_point,
                parameters=params,
                experiment_id=self.parent.info.experiment_id,
                # In-process, the step names its run as it resumes it: MLflow would tag the name once
                # the step has ended, a request more.
                run_name=None if in_process else run_name,
                backend_config={IN_PROCESS_RUN_NAME: run_name} if in_process else None,
                env_manager="local",
                backend=self.backend,
                # The in-process backend returns once the step has ended its run. MLflow's wait would
                # read the run twice more and, comparing its status text with status numbers, end it a
                # second time (4 requests a step).
                synchronous=not in_process,
            )
        except ExecutionException:
            raise
        except BaseException:
            # MLflow's wait failed while the step ran (its first read of the run, the server gone: CI,
            # 2026-12-06); MLflow ends the step only on Ctrl-C. A step never outlives its driver.
            if not in_process and (ended := end_children()):
                logger.warning("Ended %s's process %s: its driver is failing", entry_point, ended)
            raise
        if not submitted.wait():
            raise ExecutionException(f"Run (ID '{submitted.run_id}') failed")
        return submitted.run_id

    def _crashed(self, entry_point: str, crash: Crash, attempt: int) -> str:
        """Show where the step's process crashed (its faulthandler report), put the one line in its run's
        `error` tag (MLflow has ended it FAILED) and raise StepCrashed. A process that crashed after it
        had finished its run (at exit) has done and logged its work: that run's id, with a warning."""
        message = death_message(entry_point, crash, attempt)
        logger.warning("%s's process crashed; where (faulthandler):\n%s", entry_point, crash.report.rstrip())
        with retrying_for(CLOSING_SECONDS):
            if step := self._latest_child(entry_point):
                if step.info.status == FINISHED:
                    logger.warning("%s, after it had finished its run %s: kept", message, step.info.run_id)
                    return step.info.run_id
                self.client.set_tag(step.info.run_id, TAG_ERROR, message)
                if step.info.status == RUNNING:
                    self.client.set_terminated(step.info.run_id, FAILED)
        raise StepCrashed(message, crash)

    def _end_killed(self, entry_point: str) -> None:
        if (step := self._latest_child(entry_point)) and step.info.status != KILLED:
            self.client.set_terminated(step.info.run_id, KILLED)

    def _latest_child(self, entry_point: str) -> Run | None:
        """The newest run of `entry_point` started under the parent run."""
        found = self.client.search_runs(
            experiment_ids=[self.parent.info.experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = {quoted(self.parent.info.run_id)} "
            f"and tags.`{MLFLOW_PROJECT_ENTRY_POINT}` = {quoted(entry_point)}",
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


def read_crash(report: Path) -> Crash | None:
    """The crash a step's process reported in `report` (and the last line it logged, beside it), or None
    when it wrote no report: it did not crash."""
    last = report.with_name(report.name + LAST_LINE_SUFFIX)
    return crash_of(
        report.read_text(errors="replace") if report.exists() else "",
        last.read_text(errors="replace") if last.exists() else None,
    )


@contextmanager
def _variable_set(name: str, value: str) -> Iterator[None]:
    """os.environ[name] = value inside the block (what a step's process started there inherits), as it
    was afterwards."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
