"""The pipeline for many tickers at once, on Ray: one run `universe`, each ticker's pipeline its child.

    python -m flow_steps.universe --tickers MSFT,AAPL,NVDA --data-source 'prices/WIKI-{ticker}.csv'
    mlflow run . -e universe --env-manager local -P tickers=@watchlist.txt -P data_source=quandl

Each ticker is one Ray task (1 CPU) that runs `python main.py` for it, with every pipeline parameter
and the same reuse rules, as a child of the `universe` run. A local Ray instance with `max_parallel`
CPUs is started unless RAY_ADDRESS (or --ray-address) names a cluster; then the project travels to the
workers as Ray's runtime environment (`working_dir`). A ticker that fails, fails alone; the summary
(`universe/summary.csv`, a chart and metrics) is logged either way, and the command exits 1 when any
ticker failed.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import click
import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from flow_steps.config.declarations import PIPELINE_PARAMS
from flow_steps.config.entry_points import options
from flow_steps.config.errors import PipelineError
from flow_steps.config.names import (
    DEFAULT_EXPERIMENT,
    PROJECT_ROOT,
    QUANDL_SOURCE,
    SAMPLE_SOURCE,
    SAMPLE_TICKER,
    TAG_CHAMPION_VERSION,
    TAG_ERROR,
    TAG_PROMOTION,
    UNIVERSE_ENTRY_POINT,
)
from flow_steps.config.spec import SpecCommand
from flow_steps.data.masking import mask_secrets, one_line
from flow_steps.data.sources import check_data_source, is_url
from flow_steps.data.tickers import TICKER_PLACEHOLDER, normalize_ticker, parse_tickers, ticker_source
from flow_steps.runtime.interruption import exit_code, interruption_reason, raise_on_termination
from flow_steps.runtime.lifecycle import check_option, configure_logging, end_run_killed, refusals_explained
from flow_steps.runtime.store import prepare_tracking_store, sqlite_path
from flow_steps.runtime.tracking import (
    PASSWORD_VARIABLE,
    TRACKING_URI_VARIABLE,
    USERNAME_VARIABLE,
    check_tracking_server,
    client_defaults,
    experiment_label,
    run_name_unless_chosen,
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
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_ENABLE_SGC_RUN_RESUMPTION_FOR_DATABRICKS_JOBS",
    "QUANDL_API_KEY",
)
EXPERIMENT_VARIABLES = ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")
SHIPPED_EXCLUDES = ["mlruns/", "mlartifacts/", "mlflow.db*", ".git/", "outputs/", "**/__pycache__/", ".venv/"]


def check_universe(tickers: list[str], data_source: str) -> None:
    """Refuse, before any task starts, a data_source that cannot serve these tickers."""
    if data_source == SAMPLE_SOURCE:
        others = [ticker for ticker in tickers if ticker != SAMPLE_TICKER]
        if others:
            raise PipelineError(
                f"data_source '{SAMPLE_SOURCE}' holds {SAMPLE_TICKER} only, not {', '.join(others)}: "
                "give a path or URL with {ticker}, or 'quandl'"
            )
        return
    if data_source == QUANDL_SOURCE:
        return
    if TICKER_PLACEHOLDER not in data_source:
        if len(tickers) > 1:
            raise PipelineError(
                f"data_source '{mask_secrets(data_source)}' has no {TICKER_PLACEHOLDER}: every ticker would "
                "read the same prices"
            )
        check_data_source(data_source)
    elif not is_url(data_source) and "://" in data_source:
        check_data_source(data_source)  # names the unsupported scheme


def cluster_address(ray_address: str) -> str | None:
    """The Ray cluster to use: --ray-address, else $RAY_ADDRESS; None starts a local instance."""
    return ray_address or os.environ.get("RAY_ADDRESS") or None


def probe_target(address: str) -> tuple[str, int] | None:
    """The host and port to probe for a `host:port` cluster address (`[::1]:6379` gives `::1`), or None
    for what is left to Ray (`ray://` client addresses, anything without a port)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return None
    return host.removeprefix("[").removesuffix("]"), int(port)


def check_cluster_answers(address: str, timeout: float = 5) -> None:
    """A `host:port` cluster address must accept a connection: one line now instead of Ray's minutes of
    retries."""
    target = probe_target(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as error:
        reason = "connection refused" if isinstance(error, ConnectionRefusedError) else one_line(error)
        raise PipelineError(f"no Ray cluster answers at RAY_ADDRESS={address}: {reason}") from error


def check_reachable_store(address: str | None, tracking_uri: str) -> None:
    """A cluster's workers cannot write to this machine's SQLite file or ./mlruns: refuse that pairing."""
    if address is None or address.startswith(("127.0.0.1", "localhost")) or "://127.0.0.1" in address:
        return
    if sqlite_path(tracking_uri) is not None or tracking_uri.startswith("file:") or "://" not in tracking_uri:
        raise PipelineError(
            f"{TRACKING_URI_VARIABLE}={tracking_uri} is a local store that the workers of the Ray cluster "
            f"at {address} cannot reach: point it at the team tracking server (http://...)"
        )


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
        if status == "FINISHED" and outcome.returncode != 0:
            status = "FAILED"
        reason = tags.get(TAG_ERROR, "") or (outcome.last_error if status != "FINISHED" else "")
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
            outcome = ray.get(done)
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


@click.command(
    cls=SpecCommand,
    help="Run the pipeline (download, transform, train, register, with main's reuse rules) for every "
    "ticker, on Ray, as child runs of one 'universe' run that logs universe/summary.csv, a chart and "
    "metrics. Exits 1 when any ticker failed.",
)
@options(UNIVERSE_ENTRY_POINT)
def cli(tickers: str, max_parallel: int, ray_address: str, **params: str | int | float | bool) -> None:
    configure_logging()
    raise_on_termination()
    client_defaults()
    try:
        ticker_list = parse_tickers(tickers)
    except PipelineError as error:
        raise click.BadParameter(str(error), param_hint="'--tickers'") from error
    check_option(
        lambda source: check_universe(ticker_list, source), str(params["data_source"]), "--data-source"
    )
    spec = {param.name: param for param in PIPELINE_PARAMS}
    values = {name: spec[name].text(value) for name, value in params.items()}
    address = cluster_address(ray_address)
    try:
        check_reachable_store(address, mlflow.get_tracking_uri())
        if address is not None:
            check_cluster_answers(address)
        check_tracking_server()
        prepare_tracking_store(mlflow.get_tracking_uri())
        with refusals_explained(f"write runs to {experiment_label()}", "EDIT"):
            if not any(os.environ.get(name) for name in EXPERIMENT_VARIABLES):
                mlflow.set_experiment(DEFAULT_EXPERIMENT)
            parent = mlflow.start_run(run_name=run_name_unless_chosen(UNIVERSE_ENTRY_POINT))
        with parent:
            own = {**values, "tickers": tickers, "max_parallel": str(max_parallel)}
            mlflow.log_params({key: value for key, value in own.items() if key not in parent.data.params})
            mlflow.set_tag("ray_address", address or "local")
            try:
                summary = run_universe(ticker_list, values, max_parallel, address)
            except KeyboardInterrupt as error:
                end_run_killed(error)
                raise
        click.echo(summary.drop(columns=["run_id"]).to_string(index=False))
    except PipelineError as error:
        logger.error("Universe failed: %s", one_line(error))
        sys.exit(1)
    except KeyboardInterrupt as error:
        logger.error("Universe %s; its runs are marked KILLED", interruption_reason(error))
        sys.exit(exit_code(error))
    failed = int((summary["status"] != "FINISHED").sum())
    if failed:
        logger.error(
            "%d of %d tickers failed: %s",
            failed,
            len(summary),
            ", ".join(summary.loc[summary["status"] != "FINISHED", "ticker"]),
        )
        sys.exit(1)


if __name__ == "__main__":
    cli()
