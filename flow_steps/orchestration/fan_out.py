"""The universe's fan-out: each ticker's pipeline as a Ray task under one `universe` run, and the summary.

Each ticker's pipeline runs in a long-lived worker or as processes (workers.py); the summary
(`universe/summary.csv`), a chart and metrics are logged on the `universe` run whether tickers failed
or not.
"""

from __future__ import annotations

import logging
import os
import statistics
import time

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from flow_steps.config.declarations import COMPANY_ABBREVIATION
from flow_steps.config.errors import PipelineError, one_line
from flow_steps.config.names import (
    METRIC_TEST_DIRECTIONAL_ACCURACY,
    METRIC_TEST_RMSE_VS_NAIVE,
    PROJECT_ROOT,
    TAG_CHAMPION_VERSION,
    TAG_ERROR,
    TAG_PROMOTION,
    TICKER_COLUMN,
)
from flow_steps.data.sources import SOURCE_VARIABLES
from flow_steps.data.tickers import normalize_ticker
from flow_steps.orchestration.cluster import join_problem, ray_cause
from flow_steps.orchestration.pacing import Pace
from flow_steps.orchestration.workers import IN_WORKER, WORKER_DIED, TickerOutcome, TickerPool
from flow_steps.runtime.interruption import close_orphaned_runs
from flow_steps.runtime.outages import OUTAGE_VARIABLE, RETRY_VARIABLES
from flow_steps.runtime.tracking import (
    CERT_VARIABLE,
    INSECURE_VARIABLE,
    PASSWORD_VARIABLE,
    TRACKING_URI_VARIABLE,
    USERNAME_VARIABLE,
)

logger = logging.getLogger(__name__)

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
    *SOURCE_VARIABLES,
)
SHIPPED_EXCLUDES = ["mlruns/", "mlartifacts/", "mlflow.db*", ".git/", "outputs/", "**/__pycache__/", ".venv/"]


def summary_rows(client: MlflowClient, universe_run_id: str, outcomes: list[TickerOutcome]) -> pd.DataFrame:
    """One row per ticker: status as MLflow names it, the reason when it failed, scores, registry, seconds."""
    experiment_id = client.get_run(universe_run_id).info.experiment_id
    runs = client.search_runs(
        [experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{universe_run_id}'", max_results=10000
    )
    # A pipeline whose worker died before it logged its parameters names no ticker: its row has no run.
    by_ticker = {
        normalize_ticker(name): run
        for run in runs
        if (name := run.data.params.get(COMPANY_ABBREVIATION.name))
    }
    rows = []
    for outcome in outcomes:
        run = by_ticker.get(outcome.ticker)
        metrics = run.data.metrics if run else {}
        tags = run.data.tags if run else {}
        status = run.info.status if run else "FAILED"
        if outcome.returncode == WORKER_DIED or (status in ("FINISHED", "RUNNING") and outcome.returncode):
            status = "FAILED"  # RUNNING: still stopping; a dead worker's runs are KILLED, the ticker failed
        reason = tags.get(TAG_ERROR, "") or (outcome.last_error if status != "FINISHED" else "")
        if outcome.returncode == WORKER_DIED:  # its pipeline's runs say SIGTERM: the worker's death sent it
            reason = outcome.last_error
        rows.append(
            {
                TICKER_COLUMN: outcome.ticker,
                "status": status,
                "reason": _reason_text(reason),
                METRIC_TEST_RMSE_VS_NAIVE: metrics.get(METRIC_TEST_RMSE_VS_NAIVE),
                "directional_accuracy": metrics.get(METRIC_TEST_DIRECTIONAL_ACCURACY),
                TAG_PROMOTION: tags.get(TAG_PROMOTION, ""),
                TAG_CHAMPION_VERSION: tags.get(TAG_CHAMPION_VERSION, ""),
                "seconds": round(outcome.seconds, 1),
                "worker_mib": round(outcome.worker_kib / 1024) if outcome.worker_kib else None,
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
    ratios = finished[METRIC_TEST_RMSE_VS_NAIVE].dropna().astype(float).tolist()
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

    finished = summary[summary["status"] == "FINISHED"].dropna(subset=[METRIC_TEST_RMSE_VS_NAIVE])
    finished = finished.sort_values(METRIC_TEST_RMSE_VS_NAIVE)
    figure = Figure(figsize=(max(6, 0.35 * len(finished) + 2), 4.5), layout="constrained")
    axes = figure.subplots()
    colors = ["tab:green" if ratio < 1 else "tab:red" for ratio in finished[METRIC_TEST_RMSE_VS_NAIVE]]
    axes.bar(finished[TICKER_COLUMN], finished[METRIC_TEST_RMSE_VS_NAIVE], color=colors)
    axes.axhline(1.0, color="black", linewidth=1, label="naive (tomorrow = today)")
    low = min([0.95, *finished[METRIC_TEST_RMSE_VS_NAIVE].tolist()])
    high = max([1.05, *finished[METRIC_TEST_RMSE_VS_NAIVE].tolist()])
    axes.set_ylim(low - 0.01, high + 0.01)
    axes.set_ylabel("test RMSE / naive RMSE")
    axes.set_title(f"{len(finished)} tickers, sorted; below 1 beats the naive forecast")
    axes.tick_params(axis="x", labelrotation=90)
    axes.legend(loc="upper left")
    return figure


def run_universe(
    tickers: list[str],
    params: dict[str, str],
    max_parallel: int,
    address: str | None,
    executor: str = IN_WORKER,
    pace: Pace | None = None,
) -> pd.DataFrame:
    """Run every ticker's pipeline on Ray under the active `universe` run, `executor` `in-worker` or
    `process` (workers.py), starting tickers no faster than `pace`; log and return the summary."""
    import ray
    from ray.exceptions import AuthenticationError

    pace = pace or Pace(None)
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
        except (ConnectionError, RuntimeError, AuthenticationError) as error:  # Ray's cause kept, one line
            raise PipelineError(join_problem(address, ray_cause(error))) from error
        cpus = max_parallel or int(ray.cluster_resources().get("CPU", 1))
        project = "."
    logger.info(
        "Running %d tickers, %d at a time, on Ray (%s), %s%s",
        len(tickers),
        cpus,
        address or "local",
        executor,
        f", {pace.per_minute:g} a minute at most" if pace.per_minute else "",
    )
    started = time.monotonic()
    pending, waiting, outcomes = {}, list(tickers), []
    pool = TickerPool(executor, min(cpus, len(tickers)), env, project)
    try:
        while waiting or pending:
            while waiting and len(pending) < cpus and not pace.wait(time.monotonic()):
                pace.start(time.monotonic())
                ticker = waiting.pop(0)
                pending[pool.submit(ticker, params, run.info.run_id)] = ticker
            turn = pace.wait(time.monotonic()) if waiting and len(pending) < cpus else None
            if turn:
                logger.info("%d tickers wait their turn: the next starts in %.1f s", len(waiting), turn)
            if not pending:
                time.sleep(turn)
                continue
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=turn)
            if not ready:  # the pace allows the next start
                continue
            done = ready[0]
            ticker = pending.pop(done)
            outcome = pool.outcome(done, ticker)
            if outcome.returncode == WORKER_DIED:  # its runs are RUNNING with the dead worker's process
                close_orphaned_runs(MlflowClient(), run.info.experiment_id)
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
            ray.cancel(reference)  # KeyboardInterrupt in the task or the worker: its runs end KILLED
        ray.wait(list(pending), num_returns=len(pending), timeout=pool.grace_seconds)
        pool.stop()  # a worker blocked in a call the cancel cannot reach is killed; its runs are closed:
        close_orphaned_runs(MlflowClient(), run.info.experiment_id)
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
