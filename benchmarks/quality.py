"""Train with train_model's parameters on each price file and print two comparison tables: point
forecasts (the LSTM, the baselines, statsforecast's AutoARIMA and AutoETS) and prediction intervals
(coverage and Winkler interval score at 80% and 95%: the LSTM's, the naive constant-quantile baseline's,
AutoETS's and AutoARIMA's).

    python benchmarks/quality.py flow_steps/data/sample_data/WIKI-MSFT.csv tests/fixtures/EOD-MSFT.csv
    python benchmarks/quality.py flow_steps/data/sample_data/WIKI-MSFT.csv --seeds 42 1 2 3   # seed spread

Each file goes through the same cleaning as transform_data (date order, adjusted close, duplicates)
and the same split, LSTM and baselines as train_model; nothing is logged to MLflow.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

import pandas as pd

from flow_steps.config.declarations import TRAIN_PARAMS
from flow_steps.config.values import TrainParams
from flow_steps.data.ingest import load_prices
from flow_steps.model.features import holdout_size
from flow_steps.training.evaluation import AUTOARIMA, AUTOETS, BASELINES, LSTM, NAIVE, STATISTICAL_PEERS
from flow_steps.training.lstm import evaluate_split

INTERVAL_MODELS = (LSTM, NAIVE, AUTOETS, AUTOARIMA)


def evaluate_file(path: Path, params: TrainParams) -> tuple[dict[str, object], list[dict[str, object]]]:
    """One row of point-forecast scores, and one row per model with intervals."""
    prices = load_prices(path.read_bytes(), path.name).prices
    split = evaluate_split(prices, holdout_size(len(prices), params.test_fraction), params)
    metrics = split.metrics
    models = (LSTM, *BASELINES, *STATISTICAL_PEERS)
    row: dict[str, object] = {"dataset": path.name, "seed": params.seed, "test days": len(split.actual)}
    row.update({f"{name} RMSE": metrics[_key(name, "test_rmse")] for name in models})
    row.update(
        {f"{name} / naive": metrics[_key(name, "test_rmse_vs_naive")] for name in models if name != NAIVE}
    )
    row.update({"LSTM dir. acc.": metrics["test_directional_accuracy"], "up share": metrics["test_up_share"]})
    row.update({"best epoch": split.lstm.best_epoch + 1, "LSTM train s": split.lstm.train_seconds})
    row.update({f"{name} fit s": metrics[f"{name}_fit_seconds"] for name in STATISTICAL_PEERS})
    intervals = [
        {
            "dataset": path.name,
            "seed": params.seed,
            "model": name,
            **{
                f"{measure} {level}": metrics[_key(name, f"test_{measure.replace(' ', '_')}_{level}")]
                for level in (80, 95)
                for measure in ("coverage", "interval score")
            },
        }
        for name in INTERVAL_MODELS
    ]
    return row, intervals


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
    results = [evaluate_file(path, replace(params, seed=seed)) for path in files for seed in seeds]
    print(f"Parameters: {params}")
    print(pd.DataFrame([row for row, _ in results]).to_markdown(index=False, floatfmt=".4f"))
    print()
    intervals = [row for _, rows in results for row in rows]
    print(pd.DataFrame(intervals).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
