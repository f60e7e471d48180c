"""The universe's fan-out: each ticker's pipeline as a Ray task under one `universe` run, and the summary.

Each task runs `python main.py` for its ticker in its own process group (so that cancelling it stops
the pipeline and its steps); the summary (`universe/summary.csv`), a chart and metrics are logged on
the `universe` run whether tickers failed or not.
"""

from __future__ import annotations

import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from flow_steps.config.declarations import PIPELINE_PARAMS
from flow_steps.config.errors import PipelineError
from flow_steps.config.names import (
    PROJECT_ROOT,
    TAG_CHAMPION_VERSION,
    TAG_ERROR,
    TAG_PROMOTION,
)
from flow_steps.data.masking import one_line
from flow_steps.data.tickers import normalize_ticker, ticker_source
from flow_steps.runtime.outages import OUTAGE_VARIABLE, RETRY_VARIABLES
from flow_steps.runtime.tracking import (
    CERT_VARIABLE,
    INSECURE_VARIABLE,
    PASSWORD_VARIABLE,
    TRACKING_URI_VARIABLE,
    USERNAME_VARIABLE,
)

logger = logging.getLogger("universe")

SUMMARY_PATH = "universe/summary.csv"
CHART_PATH = "universe/rmse_vs_naive.png"
# What a worker needs to log like the driver: the store, the login, the client settings. Passed to each
# task as an argument (never logged), so a cluster's workers need no environment of their own.
FORWARDED_VARIABLES = (
    TRACKING_URI_VARIABLE,
    USERNAME_VARIABLE,
    PASSWORD_VARIABLE,
    CERT_VARIABLE,
    INSECURE_VARIABLE,
    OUTAGE_VARIABLE,
    *RETRY_VARIABLES,
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_ENABLE_SGC_RUN_RESUMPTION_FOR_DATABRICKS_JOBS",
    "QUANDL_API_KEY",
)
WORKER_DIED = -1  # a ticker's return code when its Ray worker died under it
SHIPPED_EXCLUDES = ["mlruns/", "mlartifacts/", "mlflow.db*", ".git/", "outputs/", "**/__pycache__/", ".venv/"]


@dataclass
class TickerOutcome:
    """What the driver learns from one task: the pipeline's exit code, its last error line, its time."""

    ticker: str
    returncode: int
    seconds: float
    last_error: str


def run_ticker(ticker: str, arguments: list[str], env: dict[str, str], project: str) -> TickerOutcome:
    """One ticker's `python main.py`, in a Ray task; stopped by SIGTERM (runs end KILLED) if cancelled."""
    cpus = _assigned_cpus()
    threads = {
        "OMP_NUM_THREADS": str(cpus),
        "TF_NUM_INTRAOP_THREADS": str(cpus),
        "TF_NUM_INTEROP_THREADS": "1",
    }
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(
            [sys.executable, "main.py", *arguments],
            cwd=project,
            env={**os.environ, **env, **threads},
            stdout=subprocess.DEVNULL,
            stderr=errors,
            text=True,
            start_new_session=True,  # its own group: cancelling the task stops it and its steps
        )
        try:
            returncode = _wait_interruptibly(process)
        except BaseException:  # cancelled (KeyboardInterrupt / TaskCancelledError) or the worker exits
            process.send_signal(signal.SIGTERM)
            process.wait()
            raise
        errors.seek(0)
        lines = [line.strip() for line in errors.read().splitlines() if line.strip()]
    last_error = next((line for line in reversed(lines) if "ERROR" in line or "Error" in line), "")
    return TickerOutcome(ticker, returncode, time.monotonic() - started, last_error)


def _wait_interruptibly(process: subprocess.Popen, poll_seconds: float = 0.5) -> int:
    """The process's exit code. Polled rather than a blocking wait: Ray cancels a task by raising
    KeyboardInterrupt between Python bytecodes, which a wait inside the C call would delay until the
    pipeline had finished on its own."""
    while (returncode := process.poll()) is None:
        time.sleep(poll_seconds)
    return returncode


def _assigned_cpus() -> int:
    """The CPUs Ray gave this task (1 outside Ray)."""
    try:
        import ray

        return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
    except Exception:  # noqa: BLE001 - outside a Ray task
        return 1


def pipeline_arguments(ticker: str, params: dict[str, str], universe_run_id: str) -> list[str]:
    """`python main.py` options for one ticker: every pipeline parameter, its data source, its parent."""
    values = {
        **params,
        "company_abbreviation": ticker,
        "data_source": ticker_source(params["data_source"], ticker),
    }
    arguments = [item for param in PIPELINE_PARAMS for item in (param.flag, values[param.name])]
    return [*arguments, "--universe-run-id", universe_run_id]


def summary_rows(client: MlflowClient, universe_run_id: str, outcomes: list[TickerOutcome]) -> pd.DataFrame:
    """One row per ticker: status as MLflow names it, the reason when it failed, scores, registry, seconds."""
    experiment_id = client.get_run(universe_run_id).info.experiment_id
    runs = client.search_runs(
        [experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{universe_run_id}'", max_results=10000
    )
    by_ticker = {normalize_ticker(run.data.params.get("company_abbreviation", "")): run for run in runs}
    rows = []
    for outcome in outcomes:
        run = by_ticker.get(outcome.ticker)
        metrics = run.data.metrics if run else {}
        tags = run.data.tags if run else {}
        status = run.info.status if run else "FAILED"
        if status in ("FINISHED", "RUNNING") and outcome.returncode != 0:  # RUNNING: still stopping
            status = "FAILED"
        reason = tags.get(TAG_ERROR, "") or (outcome.last_error if status != "FINISHED" else "")
        if outcome.returncode == WORKER_DIED:  # its pipeline's runs say SIGTERM: the worker's death sent it
            reason = outcome.last_error
        rows.append(
            {
                "ticker": outcome.ticker,
                "status": status,
                "reason": _reason_text(reason),
                "test_rmse_vs_naive": metrics.get("test_rmse_vs_naive"),
                "directional_accuracy": metrics.get("test_directional_accuracy"),
                "promotion": tags.get(TAG_PROMOTION, ""),
                "champion_version": tags.get(TAG_CHAMPION_VERSION, ""),
                "seconds": round(outcome.seconds, 1),
                "run_id": run.info.run_id if run else "",
            }
        )
    return pd.DataFrame(rows)


def _reason_text(line: str) -> str:
    """The message of a log line (`... ERROR main: Pipeline failed: X` -> `X`), one line, no secrets."""
    for marker in ("Pipeline failed: ", "Error: "):
        if marker in line:
            line = line.split(marker, 1)[1]
    return one_line(line)


def universe_metrics(summary: pd.DataFrame, wall_seconds: float) -> dict[str, float]:
    """tickers_total, tickers_failed, share_beating_naive, median_rmse_vs_naive, tickers_per_hour."""
    finished = summary[summary["status"] == "FINISHED"]
    ratios = finished["test_rmse_vs_naive"].dropna().astype(float).tolist()
    metrics = {
        "tickers_total": float(len(summary)),
        "tickers_failed": float((summary["status"] != "FINISHED").sum()),
        "tickers_per_hour": len(summary) / max(wall_seconds, 1e-9) * 3600,
    }
    if ratios:
        metrics["share_beating_naive"] = sum(ratio < 1 for ratio in ratios) / len(ratios)
        metrics["median_rmse_vs_naive"] = statistics.median(ratios)
    return metrics


def ratio_chart(summary: pd.DataFrame):
    """Each finished ticker's test RMSE / naive, sorted, with the 1.0 line (below it beats naive)."""
    from matplotlib.figure import Figure

    finished = summary[summary["status"] == "FINISHED"].dropna(subset=["test_rmse_vs_naive"])
    finished = finished.sort_values("test_rmse_vs_naive")
    figure = Figure(figsize=(max(6, 0.35 * len(finished) + 2), 4.5), layout="constrained")
    axes = figure.subplots()
    colors = ["tab:green" if ratio < 1 else "tab:red" for ratio in finished["test_rmse_vs_naive"]]
    axes.bar(finished["ticker"], finished["test_rmse_vs_naive"], color=colors)
    axes.axhline(1.0, color="black", linewidth=1, label="naive (tomorrow = today)")
    low = min([0.95, *finished["test_rmse_vs_naive"].tolist()])
    high = max([1.05, *finished["test_rmse_vs_naive"].tolist()])
    axes.set_ylim(low - 0.01, high + 0.01)
    axes.set_ylabel("test RMSE / naive RMSE")
    axes.set_title(f"{len(finished)} tickers, sorted; below 1 beats the naive forecast")
    axes.tick_params(axis="x", labelrotation=90)
    axes.legend(loc="upper left")
    return figure


def _outcome(reference: object, ticker: str) -> TickerOutcome:
    """The task's outcome; a task whose Ray worker died is a failed ticker (its pipeline stops with it)."""
    import ray

    try:
        return ray.get(reference)
    except ray.exceptions.RayError as error:
        logger.error("%s: its Ray worker died (%s)", ticker, type(error).__name__)
        return TickerOutcome(ticker, WORKER_DIED, 0.0, f"its Ray worker died ({type(error).__name__})")


def run_universe(
    tickers: list[str], params: dict[str, str], max_parallel: int, address: str | None
) -> pd.DataFrame:
    """Run every ticker's pipeline on Ray under the active `universe` run; log and return the summary."""
    import ray

    run = mlflow.active_run()
    env = {name: os.environ[name] for name in FORWARDED_VARIABLES if os.environ.get(name)}
    env["MLFLOW_EXPERIMENT_ID"] = run.info.experiment_id
    env.pop("MLFLOW_EXPERIMENT_NAME", None)
    if address is None:
        cpus = max_parallel or os.cpu_count() or 1
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        project = str(PROJECT_ROOT)
    else:  # ship the project: the workers run it from Ray's copy of this folder
        runtime_env = {"working_dir": str(PROJECT_ROOT), "excludes": SHIPPED_EXCLUDES}
        try:
            ray.init(
                address=address, runtime_env=runtime_env, log_to_driver=False, logging_level=logging.WARNING
            )
        except (ConnectionError, RuntimeError) as error:
            raise PipelineError(
                f"cannot join the Ray cluster at RAY_ADDRESS={address}: {one_line(error)}"
            ) from error
        cpus = max_parallel or int(ray.cluster_resources().get("CPU", 1))
        project = "."
    logger.info("Running %d tickers, %d at a time, on Ray (%s)", len(tickers), cpus, address or "local")
    task = ray.remote(num_cpus=1, max_retries=0)(run_ticker)
    started = time.monotonic()
    pending, waiting, outcomes = {}, list(tickers), []
    try:
        while waiting or pending:
            while waiting and len(pending) < cpus:
                ticker = waiting.pop(0)
                arguments = pipeline_arguments(ticker, params, run.info.run_id)
                pending[task.remote(ticker, arguments, env, project)] = ticker
            [done], _ = ray.wait(list(pending), num_returns=1)
            ticker = pending.pop(done)
            outcome = _outcome(done, ticker)
            outcomes.append(outcome)
            failed = sum(item.returncode != 0 for item in outcomes)
            logger.info(
                "%d/%d done (%d failed): %s %s in %.0f s",
                len(outcomes),
                len(tickers),
                failed,
                ticker,
                "finished" if outcome.returncode == 0 else "FAILED",
                outcome.seconds,
            )
    except KeyboardInterrupt:
        logger.error("Interrupted: cancelling %d running tickers", len(pending))
        for reference in pending:
            ray.cancel(reference)  # KeyboardInterrupt in the task: it SIGTERMs its pipeline
        ray.wait(list(pending), num_returns=len(pending), timeout=60)
        raise
    finally:
        ray.shutdown()
    wall = time.monotonic() - started
    summary = summary_rows(
        MlflowClient(), run.info.run_id, sorted(outcomes, key=lambda o: tickers.index(o.ticker))
    )
    mlflow.log_text(summary.to_csv(index=False), SUMMARY_PATH)
    mlflow.log_figure(ratio_chart(summary), CHART_PATH)
    mlflow.log_metrics(universe_metrics(summary, wall))
    return summary
