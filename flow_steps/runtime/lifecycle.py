"""The thin shell every step shares: logging, its MLflow run, and one-line failures."""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from pathlib import Path

import click
import mlflow
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flow_steps.config.errors import PipelineError, one_line
from flow_steps.config.names import (
    EXPERIMENT_KIND_TAG,
    TAG_CODE_VERSION,
    TAG_ERROR,
    TRAINING_EXPERIMENT_KIND,
)
from flow_steps.data.findings import price_findings
from flow_steps.data.ingest import CleaningReport
from flow_steps.runtime.interruption import (
    FAILED,
    KILLED,
    exit_code,
    interruption_reason,
    raise_on_termination,
    this_process,
)
from flow_steps.runtime.lineage import code_version
from flow_steps.runtime.outages import is_outage, outage_error, tried_briefly
from flow_steps.runtime.store import prepare_tracking_store
from flow_steps.runtime.tracking import (
    RUN_ID_VARIABLE,
    check_tracking_server,
    client_defaults,
    experiment_label,
    is_refusal,
    refusal,
)

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Set by the driver for each step's process: the file its crash report goes to, the last line it logged
# beside it (LAST_LINE_SUFFIX added); orchestration/crashes.py reads them.
CRASH_REPORT_VARIABLE = "FLOW_STEPS_CRASH_REPORT"
LAST_LINE_SUFFIX = ".last"


def configure_logging(level: int = logging.INFO) -> None:
    """Log to stderr with timestamps; called by entry points, never on import."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)


class LastLine(logging.Handler):
    """Keeps the message of the last record in a file, replaced whole at each record (written beside it,
    then renamed): a process that dies leaves what it last said it did."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path

    def emit(self, record: logging.LogRecord) -> None:
        # Best effort, and silent: once the driver has gone (its folder removed, a step outliving an
        # outage) nobody will read the file, and a traceback on stderr would break the one-line rule.
        with suppress(OSError):
            partial = self.path.with_name(f"{self.path.name}.partial")
            partial.write_text(record.getMessage())
            os.replace(partial, self.path)


def report_crashes() -> None:
    """`faulthandler` for every thread: a crash (SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE) prints where
    it happened. Into the file CRASH_REPORT_VARIABLE names when the driver set it (for the life of the
    process), the last log line kept beside it; else (also when that file's folder is gone: the step
    outlived its driver) on the process's own stderr."""
    if report := os.environ.get(CRASH_REPORT_VARIABLE):
        root = logging.getLogger()
        for kept in [handler for handler in root.handlers if isinstance(handler, LastLine)]:
            root.removeHandler(kept)  # an earlier entry point in this process (tests)
        root.addHandler(LastLine(Path(report + LAST_LINE_SUFFIX)))
        try:
            faulthandler.enable(file=open(report, "w"), all_threads=True)  # noqa: SIM115 faulthandler holds it
            return
        except OSError:  # the driver gave up (an outage) and removed its folder while this step started
            pass
    if sys.__stderr__ is not None:  # also when click's test runner replaced sys.stderr
        with suppress(OSError, ValueError):  # one without a file descriptor cannot take it
            faulthandler.enable(file=sys.__stderr__, all_threads=True)


@contextmanager
def entry_point(label: str, runs: str = "run", checks: tuple[Callable[[], None], ...] = ()) -> Iterator[None]:
    """The life of an entry point's process, around everything it does after parsing its options.

    Logging to stderr, a native crash's Python traceback (`report_crashes`), SIGINT/SIGTERM raised as
    `Interrupted`, MLflow's client settings, the tracking server checked (one line in seconds when it is
    down) and a fresh SQLite store created once; then a `PipelineError` ends the process with one line
    and exit 1, and an interruption with one line and exit 130 or 143. `runs` says what was marked
    KILLED ("run", or "runs" for a pipeline); `checks` run before the tracking store is touched (a
    universe's cluster and store pairing, say).

    Adding an entry point: a click command with `@options(<name>)` (its parameters declared in
    config/entry_points.py), its body `with entry_point(<name>): with tracked_run(<name>, params):`
    and one call into the layers; MLproject and docs/parameters.md come from `python -m
    flow_steps.parameters`.
    """
    configure_logging()
    report_crashes()
    raise_on_termination()
    marked = f"its {runs} {'is' if runs == 'run' else 'are'} marked KILLED"
    try:
        client_defaults()
        for check in checks:
            check()
        check_tracking_server()
        prepare_tracking_store(mlflow.get_tracking_uri())
        yield
    except PipelineError as error:
        logger.error("%s failed: %s", label, one_line(error))
        sys.exit(1)
    except MlflowException as error:  # the tracking server stayed away longer than the outage setting
        if not is_outage(error):
            raise
        logger.error("%s failed: %s", label, one_line(outage_error(error)))
        sys.exit(1)
    except KeyboardInterrupt as error:
        logger.error("%s %s; %s", label, interruption_reason(error), marked)
        sys.exit(exit_code(error))


@contextmanager
def tracked_run(
    run_name: str | None,
    params: dict[str, object],
    tags: dict[str, str] | None = None,
    run_id: str | None = None,
    nested: bool = False,
) -> Iterator[mlflow.ActiveRun]:
    """The MLflow run of the work inside the block: started (or resumed, under `mlflow run`) tagged with
    the process that will close it, then with the code version and its parameters; a `PipelineError` or
    an outage longer than TRACKING_OUTAGE_SECONDS is stored in its `error` tag and ends it FAILED, an
    interruption ends it KILLED (closing is tried briefly: the next pipeline closes what the server did
    not take). `run_name` None keeps the name the run has (`mlflow run` made it); `run_id` continues that
    run, nested under the active one (a step in a worker's process); `nested` starts a child of the
    active run (a replay's retraining)."""
    with refusals_explained(f"write runs to {experiment_label()}", "EDIT"):
        run = mlflow.start_run(
            run_id=run_id,
            run_name=run_name,
            nested=nested or run_id is not None,
            tags={**(tags or {}), **this_process().tags(), TAG_CODE_VERSION: code_version()},
        )
    with run:
        try:
            with refusals_explained(f"write runs to {experiment_label()}", "EDIT"):
                mark_training_experiment(run.info.experiment_id)
                logged = run.data.params
                mlflow.log_params({key: value for key, value in params.items() if key not in logged})
            yield run
        except PipelineError as error:
            end_active_run(FAILED, one_line(error))
            raise
        except MlflowException as error:
            if not is_outage(error):
                raise
            end_active_run(FAILED, one_line(outage_error(error)))
            raise outage_error(error) from error
        except KeyboardInterrupt as error:
            end_run_killed(error)
            raise


def run_step(
    step_name: str,
    params: dict[str, object],
    work: Callable[[], None],
    output: Callable[[], str] | None = None,
) -> None:
    """Run `work` as the step `step_name`: its process's life and its MLflow run (see `entry_point` and
    `tracked_run`). Under `mlflow run` the run already exists (MLFLOW_RUN_ID) and keeps the name the driver
    gave it (`MSFT train_model`); run alone, the step starts its own. When it succeeds, `output` names
    what it made (an artifact URI), printed with the run id."""
    if step := _STEP_RUN.get():  # called in a worker's process by the in-process backend
        run_id, run_name = step
        with tracked_run(run_name, params, run_id=run_id):
            work()
        return
    with (
        entry_point(step_name),
        tracked_run(None if os.environ.get(RUN_ID_VARIABLE) else step_name, params) as run,
    ):
        work()
        if output:
            click.echo(f"{step_name} run {run.info.run_id}: {output()}")


# The run a step called in this process continues, and the name it gives it (None: keeps its name); set
# by the in-process backend. None in a step's own process, which learns its run from MLFLOW_RUN_ID.
_STEP_RUN: ContextVar[tuple[str, str | None] | None] = ContextVar("step_run", default=None)


@contextmanager
def continuing_run(run_id: str, run_name: str | None = None) -> Iterator[None]:
    """Inside the block, `run_step` runs the step's work in run `run_id` (named `run_name` as it resumes
    it, unless None), nested under the active run, without the process shell (`entry_point`): the
    caller's process is a worker that goes on."""
    token = _STEP_RUN.set((run_id, run_name))
    try:
        yield
    finally:
        _STEP_RUN.reset(token)


def end_run_killed(error: KeyboardInterrupt) -> None:
    """End the active run KILLED, saying why in its `error` tag."""
    end_active_run(KILLED, interruption_reason(error))


def end_active_run(status: str, reason: str) -> None:
    """End the active run `status` with `reason` in its `error` tag, trying briefly (`tried_briefly`);
    it is no longer this process's active run either way."""
    run_id = mlflow.active_run().info.run_id
    tried_briefly(
        f"mark run {run_id} {status}",
        lambda: mlflow.set_tag(TAG_ERROR, reason),
        lambda: mlflow.end_run(status),
    )


@contextmanager
def refusals_explained(action: str, permission: str) -> Iterator[None]:
    """Turn the tracking server's 401/403 answers inside the block into one-line PipelineErrors."""
    try:
        yield
    except MlflowException as error:
        if is_refusal(error):
            raise refusal(error, action, permission) from error
        raise


def record_price_checks(
    report: CleaningReport, tags: dict[str, str] | None = None, metrics: dict[str, float] | None = None
) -> None:
    """Log what the price checks found on the active run (data/findings.py), and warn about each kind;
    with the step's other `tags` and `metrics` (step 0), in the same request."""
    findings = price_findings(report)
    for warning in findings.warnings:
        logger.warning("%s", warning)
    now = int(time.time() * 1000)
    metrics, tags = {**(metrics or {}), **findings.metrics}, {**(tags or {}), **findings.tags}
    MlflowClient().log_batch(
        mlflow.active_run().info.run_id,
        metrics=[Metric(name, value, now, 0) for name, value in metrics.items()],
        tags=[RunTag(name, value) for name, value in tags.items()],
    )


def mark_training_experiment(experiment_id: str) -> None:
    """Tag the experiment so that MLflow 3's UI opens it on its training runs (not the GenAI view); once
    per experiment and process (a universe's worker runs many)."""
    key = (mlflow.get_tracking_uri(), experiment_id)
    if key in _MARKED:
        return
    client = MlflowClient()
    if client.get_experiment(experiment_id).tags.get(EXPERIMENT_KIND_TAG) != TRAINING_EXPERIMENT_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, TRAINING_EXPERIMENT_KIND)
    _MARKED.add(key)


_MARKED: set[tuple[str, str]] = set()  # (tracking URI, experiment id) already marked by this process
