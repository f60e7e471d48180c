"""Tickers per hour of the universe with 1 and with 2 Ray workers, and the speed-up.

    python benchmarks/universe.py                          # 6 tickers, 5 epochs, about 10 minutes on 2 cores
    python benchmarks/universe.py --tickers 8 --epochs 10

The tickers are built from the bundled sample (each a different period of it, at a different price
level), so nothing is downloaded. Each measurement is `python -m flow_steps.universe` on a fresh SQLite
store in a temporary folder (nothing is reused between them); registration included.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from flow_steps.data.sources import SAMPLE_FILE

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TARGET_SPEED_UP = 1.6
logger = logging.getLogger("benchmarks.universe")


def write_tickers(folder: Path, count: int) -> tuple[list[str], str]:
    """`count` price files from the sample: ticker i holds a different 2,000-day stretch at level i+1."""
    sample = pd.read_csv(SAMPLE_FILE)
    prices = ["Open", "High", "Low", "Close", "Adj Close"]
    tickers = []
    for index in range(count):
        ticker = f"T{index:02d}"
        start = (index * 211) % max(1, len(sample) - 2000)
        stretch = sample.iloc[start : start + 2000].copy()
        stretch[prices] = stretch[prices] * (index + 1)
        stretch.to_csv(folder / f"WIKI-{ticker}.csv", index=False)
        tickers.append(ticker)
    return tickers, str(folder / "WIKI-{ticker}.csv")


def universe_seconds(
    tickers: list[str], source: str, workers: int, options: list[str], folder: Path
) -> float:
    """Wall seconds of one universe run with `workers` Ray workers on a fresh store in `folder`."""
    folder.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "RAY_"))}
    env.update(
        {
            "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
            "MLFLOW_EXPERIMENT_NAME": "universe-benchmark",
        }
    )
    command = [sys.executable, "-m", "flow_steps.universe", "--tickers", ",".join(tickers)]
    command += ["--data-source", source, "--max-parallel", str(workers), *options]
    logger.info("%d tickers with %d worker(s)", len(tickers), workers)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"the universe failed:\n{result.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickers", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--max-row-limit", type=int, default=1500)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = ["--epochs", str(arguments.epochs), "--max-row-limit", str(arguments.max_row_limit)]
    with tempfile.TemporaryDirectory(prefix="universe-benchmark-") as name:
        folder = Path(name)
        tickers, source = write_tickers(folder, arguments.tickers)
        seconds = {
            workers: universe_seconds(tickers, source, workers, options, folder / str(workers))
            for workers in (1, 2)
        }
    table = pd.DataFrame(
        {
            "workers": list(seconds),
            "wall s": [round(value, 1) for value in seconds.values()],
            "tickers per hour": [round(len(tickers) / value * 3600) for value in seconds.values()],
        }
    )
    size = f"{arguments.epochs} epochs, {arguments.max_row_limit} days each"
    print(f"\n{len(tickers)} tickers, {size}, on {os.cpu_count()} CPUs:")
    print(table.to_string(index=False))
    speed_up = seconds[1] / seconds[2]
    verdict = "met" if speed_up >= TARGET_SPEED_UP else "NOT met"
    print(f"speed-up with 2 workers: {speed_up:.2f}x   target >= {TARGET_SPEED_UP}x   {verdict}")


if __name__ == "__main__":
    main()
