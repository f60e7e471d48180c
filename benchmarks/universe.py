"""Tickers per hour of the universe: process mode with 2 workers, in-worker mode with 1 and 2 workers.

    python benchmarks/universe.py                     # 24 tickers, 5 epochs: about 25 minutes on 2 cores
    python benchmarks/universe.py --tickers 6         # a quicker look

The tickers are built from the bundled sample (each a different stretch of it, at a different price
level), so nothing is downloaded. Each measurement is one `python -m flow_steps.universe` on a fresh SQLite
store in a temporary folder (nothing is reused between them); registration included. It prints tickers
per hour for each, the speed-ups against the targets, per-ticker wall in a worker against the same
ticker's pipeline run in one warm process, and the steadiness of a worker's memory (after the last ticker
against after the third, one worker running them all).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from flow_steps.data.sources import SAMPLE_FILE

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TARGETS = {  # the bars: (ratio, at least or at most)
    "in-worker 2 / process 2": (3.0, "at least"),
    "in-worker 2 / in-worker 1": (1.7, "at least"),
    "in-worker ticker / one process": (1.3, "at most"),
    "memory after last / after 3rd": (1.2, "at most"),
}
EXPERIMENT = "universe-benchmark"
logger = logging.getLogger("benchmarks.universe")


def write_tickers(folder: Path, count: int, days: int) -> tuple[list[str], str]:
    """`count` price files from the sample: ticker i holds a different stretch at price level i+1."""
    sample = pd.read_csv(SAMPLE_FILE)
    prices = ["Open", "High", "Low", "Close", "Adj Close"]
    tickers = []
    for index in range(count):
        ticker = f"T{index:02d}"
        start = (index * 97) % max(1, len(sample) - days - 200)
        stretch = sample.iloc[start : start + days + 200].copy()
        stretch[prices] = stretch[prices] * (index + 1)
        stretch.to_csv(folder / f"WIKI-{ticker}.csv", index=False)
        tickers.append(ticker)
    return tickers, str(folder / "WIKI-{ticker}.csv")


def store_env(folder: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "RAY_"))}
    env.update(
        {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}", "MLFLOW_EXPERIMENT_NAME": EXPERIMENT}
    )
    return env


def universe(tickers: list[str], options: list[str], executor: str, workers: int, folder: Path):
    """Wall seconds of one universe on a fresh store in `folder`, and its summary table."""
    folder.mkdir()
    command = [sys.executable, "-m", "flow_steps.universe", "--tickers", ",".join(tickers), *options]
    command += ["--executor", executor, "--max-parallel", str(workers)]
    logger.info("%d tickers, %s with %d worker(s)", len(tickers), executor, workers)
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=PROJECT_ROOT, env=store_env(folder), capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"the universe failed:\n{result.stderr[-3000:]}")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    [run] = client.search_runs([experiment.experiment_id], "attributes.run_name = 'universe'")
    summary = pd.read_csv(client.download_artifacts(run.info.run_id, "universe/summary.csv", str(folder)))
    return seconds, summary


ONE_PROCESS = """
import os, sys, time
from flow_steps.orchestration.workers import WORKER_SETTINGS
os.environ.update(WORKER_SETTINGS)   # as in a universe's worker
from flow_steps.orchestration.driver import run_pipeline
from flow_steps.runtime.lifecycle import configure_logging
from flow_steps.runtime.tracking import client_defaults
import mlflow
configure_logging(); client_defaults(); mlflow.set_experiment("one-process")
values = dict(arg.split("=", 1) for arg in sys.argv[1:])
for ticker in ("T00", "T01"):   # the first warms the process up (imports, graphs), the second is timed
    source = values["data_source"].replace("{ticker}", ticker)
    started = time.perf_counter()
    run_pipeline({**values, "company_abbreviation": ticker, "data_source": source}, backend="in-process")
    print(f"{ticker} {time.perf_counter() - started:.3f}")
"""


def one_process_seconds(source: str, values: dict[str, str], folder: Path) -> float:
    """The wall of one ticker's pipeline (T01) run in one warm process, the steps in that process."""
    folder.mkdir()
    arguments = [f"{name}={value}" for name, value in {**values, "data_source": source}.items()]
    result = subprocess.run(
        [sys.executable, "-c", ONE_PROCESS, *arguments],
        cwd=PROJECT_ROOT,
        env=store_env(folder),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"the one-process run failed:\n{result.stderr[-3000:]}")
    return float(result.stdout.split()[-1])


def pipeline_values(epochs: int, days: int) -> dict[str, str]:
    """Every pipeline parameter at its default, but the benchmark's epochs and days (strings, as main.py)."""
    from flow_steps.config.declarations import PIPELINE_PARAMS

    values = {param.name: param.text(param.default) for param in PIPELINE_PARAMS if param.default is not None}
    values.update({"epochs": str(epochs), "max_row_limit": str(days)})
    return {name: value for name, value in values.items() if name not in ("reuse_training", "register_model")}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickers", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-row-limit", type=int, default=1500)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = ["--epochs", str(arguments.epochs), "--max-row-limit", str(arguments.max_row_limit)]
    with tempfile.TemporaryDirectory(prefix="universe-benchmark-") as name:
        folder = Path(name)
        tickers, source = write_tickers(folder, arguments.tickers, arguments.max_row_limit)
        options += ["--data-source", source]
        runs = {
            (executor, workers): universe(
                tickers, options, executor, workers, folder / f"{executor}-{workers}"
            )
            for executor, workers in (("process", 2), ("in-worker", 1), ("in-worker", 2))
        }
        reference = one_process_seconds(
            source, pipeline_values(arguments.epochs, arguments.max_row_limit), folder / "one-process"
        )
    per_hour = {key: len(tickers) / seconds * 3600 for key, (seconds, _) in runs.items()}
    table = pd.DataFrame(
        {
            "executor": [executor for executor, _ in runs],
            "workers": [workers for _, workers in runs],
            "wall s": [round(seconds, 1) for seconds, _ in runs.values()],
            "tickers per hour": [round(value) for value in per_hour.values()],
            "median ticker s": [
                round(statistics.median(summary["seconds"]), 1) for _, summary in runs.values()
            ],
        }
    )
    single = runs[("in-worker", 1)][1]
    memory = single["worker_mib"].tolist()
    ratios = {
        "in-worker 2 / process 2": per_hour[("in-worker", 2)] / per_hour[("process", 2)],
        "in-worker 2 / in-worker 1": per_hour[("in-worker", 2)] / per_hour[("in-worker", 1)],
        "in-worker ticker / one process": single.set_index("ticker").loc["T01", "seconds"] / reference,
        "memory after last / after 3rd": memory[-1] / memory[2],
    }
    size = f"{arguments.epochs} epochs, {arguments.max_row_limit} days each, registration included"
    print(f"\n{len(tickers)} tickers, {size}, on {os.cpu_count()} CPUs:")
    print(table.to_string(index=False))
    print(f"T01 in one warm process: {reference:.1f} s; one worker's memory by ticker (MiB): {memory}")
    for name, value in ratios.items():
        target, sense = TARGETS[name]
        met = value >= target if sense == "at least" else value <= target
        print(f"{name}: {value:.2f}x   target {sense} {target}x   {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
