"""Train with train_model's parameters on each price file and print one comparison table.

    python benchmarks/quality.py flow_steps/sample_data/WIKI-MSFT.csv tests/fixtures/EOD-MSFT.csv
    python benchmarks/quality.py flow_steps/sample_data/WIKI-MSFT.csv --seeds 42 1 2 3   # seed spread

Each file goes through the same cleaning as transform_data (date order, adjusted close, duplicates)
and the same split, LSTM and baselines as train_model; nothing is logged to MLflow.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from flow_steps.evaluation import BASELINES, LSTM
from flow_steps.features import holdout_size
from flow_steps.ingest import load_prices
from flow_steps.parameters import TRAIN_PARAMS, TrainParams
from flow_steps.training import evaluate_split


def evaluate_file(path: Path, params: TrainParams) -> dict[str, object]:
    """One table row: the LSTM's and every baseline's RMSE, ratios to naive, directional accuracy."""
    prices = load_prices(path.read_bytes(), path.name).prices
    started = time.perf_counter()
    split = evaluate_split(prices, holdout_size(len(prices), params.test_fraction), params)
    seconds = time.perf_counter() - started
    metrics = split.metrics
    row: dict[str, object] = {"dataset": path.name, "seed": params.seed, "test days": len(split.actual)}
    row.update({f"{name} RMSE": metrics[_key(name, "test_rmse")] for name in (LSTM, *BASELINES)})
    row.update(
        {
            f"{name} / naive": metrics[_key(name, "test_rmse_vs_naive")]
            for name in (LSTM, *BASELINES)
            if name != "naive"
        }
    )
    row.update({"LSTM dir. acc.": metrics["test_directional_accuracy"], "up share": metrics["test_up_share"]})
    row.update({"best epoch": split.lstm.best_epoch + 1, "train s": seconds})
    return row


def _key(model: str, metric: str) -> str:
    return metric if model == LSTM else f"{model}_{metric}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", type=Path, help="price CSV files")
    parser.add_argument("--seeds", nargs="+", type=int, help="train once per seed (instead of --seed)")
    for param in TRAIN_PARAMS:
        parser.add_argument(param.flag, type=param.python_type, default=param.default, help=param.help)
    arguments = vars(parser.parse_args())
    files, seeds = arguments.pop("files"), arguments.pop("seeds") or [arguments["seed"]]
    params = TrainParams(**arguments)
    logging.basicConfig(level=logging.WARNING)
    rows = [evaluate_file(path, replace(params, seed=seed)) for path in files for seed in seeds]
    print(f"Parameters: {params}")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
