"""The thin shell every step shares: logging, its MLflow run, and one-line failures."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import mlflow
import pandas as pd
from mlflow.data.dataset_source import DatasetSource
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flow_steps.config.errors import PipelineError, SourceError
from flow_steps.config.names import (
    EXPERIMENT_KIND_TAG,
    METRIC_LARGEST_DAILY_MOVE,
    METRIC_LARGEST_GAP_DAYS,
    TAG_CODE_VERSION,
    TAG_DATE_FORMAT,
    TAG_ERROR,
    TAG_SUSPECT_MOVES,
    TAG_TICKER,
    TRAINING_EXPERIMENT_KIND,
)
from flow_steps.data.ingest import CleaningReport, suspect_move_message
from flow_steps.data.masking import one_line
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
    check_tracking_server,
    client_defaults,
    experiment_label,
    is_refusal,
    refusal,
)

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: int = logging.INFO) -> None:
    """Log to stderr with timestamps; called by entry points, never on import."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)


@contextmanager
def entry_point(label: str, runs: str = "run", checks: tuple[Callable[[], None], ...] = ()) -> Iterator[None]:
    """The life of an entry point's process, around everything it does after parsing its options.

    Logging to stderr, SIGINT/SIGTERM raised as `Interrupted`, MLflow's client settings, the tracking
    server checked (one line in seconds when it is down) and a fresh SQLite store created once; then a
    `PipelineError` ends the process with one line and exit 1, and an interruption with one line and
    exit 130 or 143. `runs` says what was marked KILLED ("run", or "runs" for a pipeline); `checks` run
    before the tracking store is touched (a universe's cluster and store pairing, say).

    Adding an entry point: a click command with `@options(<name>)` (its parameters declared in
    config/entry_points.py), its body `with entry_point(<name>): with tracked_run(<name>, params):`
    and one call into the layers; MLproject and docs/parameters.md come from `python -m
    flow_steps.parameters`.
    """
    configure_logging()
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
    run_name: str | None, params: dict[str, object], tags: dict[str, str] | None = None
) -> Iterator[mlflow.ActiveRun]:
    """The MLflow run of the work inside the block: started (or resumed, under `mlflow run`) tagged with
    the process that will close it, then with the code version and its parameters; a `PipelineError` or
    an outage longer than TRACKING_OUTAGE_SECONDS is stored in its `error` tag and ends it FAILED, an
    interruption ends it KILLED (closing is tried briefly: the next pipeline closes what the server did
    not take). `run_name` None keeps the name the run has (`mlflow run` made it)."""
    with refusals_explained(f"write runs to {experiment_label()}", "EDIT"):
        run = mlflow.start_run(run_name=run_name, tags={**(tags or {}), **this_process().tags()})
    with run:
        try:
            with refusals_explained(f"write runs to {experiment_label()}", "EDIT"):
                mark_training_experiment(run.info.experiment_id)
                mlflow.set_tag(TAG_CODE_VERSION, code_version())
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
    with (
        entry_point(step_name),
        tracked_run(None if os.environ.get("MLFLOW_RUN_ID") else step_name, params) as run,
    ):
        work()
        if output:
            click.echo(f"{step_name} run {run.info.run_id}: {output()}")


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


# runs:/, models:/, mlflow-artifacts:/, file:, s3:// ...
URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def local_input(path_or_uri: str) -> str:
    """A step's input file: a local path as it is, an artifact URI (what a step prints) downloaded first.

    `mlflow run` downloads URI parameters of type path itself; run alone, a step does it here, so
    `python -m flow_steps.transform_data --dataset-stock-csv <the URI download_raw_data printed>` works.
    """
    if not URI_SCHEME.match(path_or_uri) or Path(path_or_uri).exists():
        return path_or_uri
    try:
        return mlflow.artifacts.download_artifacts(artifact_uri=path_or_uri)
    except (MlflowException, OSError) as error:
        raise SourceError(f"could not download '{path_or_uri}': {one_line(error)}") from error


def check_option(check: Callable[[str], None], value: str, flag: str) -> None:
    """Run `check(value)` before any run starts; its PipelineError becomes click's usage error (exit 2)."""
    try:
        check(value)
    except PipelineError as error:
        raise click.BadParameter(str(error), param_hint=f"'{flag}'") from error


def record_price_checks(report: CleaningReport) -> None:
    """Log what the price checks found on the active run; warn in one line about suspect moves."""
    mlflow.set_tag(TAG_DATE_FORMAT, report.date_format)
    mlflow.log_metrics(
        {
            METRIC_LARGEST_GAP_DAYS: report.largest_gap_days,
            METRIC_LARGEST_DAILY_MOVE: report.largest_daily_move,
        }
    )
    if report.suspect_moves:
        mlflow.set_tag(TAG_SUSPECT_MOVES, "; ".join(move.describe() for move in report.suspect_moves)[:4000])
        logger.warning(
            "%s; on_suspect_move=fail refuses such a file",
            suspect_move_message(report.suspect_moves, report.price_column),
        )


def mark_training_experiment(experiment_id: str) -> None:
    """Tag the experiment so that MLflow 3's UI opens it on its training runs (not the GenAI view)."""
    client = MlflowClient()
    if client.get_experiment(experiment_id).tags.get(EXPERIMENT_KIND_TAG) != TRAINING_EXPERIMENT_KIND:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, TRAINING_EXPERIMENT_KIND)


RUN_ARTIFACT_URI = re.compile(r"/(?P<run_id>[0-9a-f]{32})/artifacts/")


def log_prices_input(prices: pd.DataFrame, parameter: str, local_path: str) -> None:
    """Log the prices a step read as an MLflow dataset input: its source is the URI they came from.

    Under `mlflow run` a path parameter is logged as the artifact URI and handed to the step as a
    downloaded file; the dataset names that URI, and the ticker its transform run recorded.
    """
    run = mlflow.get_run(mlflow.active_run().info.run_id)
    source = run.data.params.get(parameter, local_path)
    ticker = Path(local_path).stem if parameter == "dataset_stock_csv" else _ticker_of(source)
    dataset = mlflow.data.from_pandas(
        prices, source=ArtifactSource(source), name=f"{ticker} prices" if ticker else "prices"
    )
    mlflow.log_input(dataset, context="training" if parameter == "stock_data" else "raw")


class ArtifactSource(DatasetSource):
    """A dataset's source: the artifact URI (or path) it was read from, `mlflow-artifacts:/` included.

    MLflow resolves local and cloud URIs to sources of its own but not a tracking server's proxied
    `mlflow-artifacts:/` URIs; this one names any of them and downloads it with MLflow.
    """

    def __init__(self, uri: str):
        self.uri = uri

    @staticmethod
    def _get_source_type() -> str:
        return "artifact"

    def load(self, dst_path: str | None = None) -> str:
        return mlflow.artifacts.download_artifacts(self.uri, dst_path=dst_path)

    @staticmethod
    def _can_resolve(raw_source: object) -> bool:
        return False  # made explicitly, never guessed from a string

    @classmethod
    def _resolve(cls, raw_source: str) -> ArtifactSource:
        return cls(raw_source)

    def to_dict(self) -> dict[str, str]:
        return {"uri": self.uri}

    @classmethod
    def from_dict(cls, source_dict: dict) -> ArtifactSource:
        return cls(source_dict["uri"])


def _ticker_of(source: str) -> str | None:
    """The ticker tag of the run whose artifact `source` is, if any."""
    match = RUN_ARTIFACT_URI.search(source)
    if not match:
        return None
    try:
        return MlflowClient().get_run(match["run_id"]).data.tags.get(TAG_TICKER)
    except MlflowException:
        return None
