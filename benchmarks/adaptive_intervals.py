"""Static against adaptive (ACI) prediction intervals of the LSTM on the same test days, side by side.

    python benchmarks/adaptive_intervals.py flow_steps/data/sample_data/WIKI-MSFT.csv \
        --start 2005-01-01 --end 2009-12-31 --test-fraction 0.4
    python benchmarks/adaptive_intervals.py flow_steps/data/sample_data/WIKI-MSFT.csv \
        tests/fixtures/EOD-MSFT.csv

Each file goes through transform_data's cleaning, is cut to [--start, --end] when given, and is split,
trained and calibrated as train_model does (nothing is logged to MLflow). Both ways use the same
forecasts and calibration scores; the adaptive one walks through the test days in order. `--gammas`
adds rows for other ACI steps on the same forecasts (a sensitivity check on the test days: not a way
to choose gamma, which would look at them).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from flow_steps.config.declarations import TRAIN_PARAMS
from flow_steps.config.names import ADAPTIVE_INTERVALS, DATE_COLUMN, PRICE_COLUMN, STATIC_INTERVALS
from flow_steps.config.values import TrainParams
from flow_steps.data.ingest import load_prices
from flow_steps.model.adaptive import GAMMA, adaptive_intervals
from flow_steps.model.features import holdout_size
from flow_steps.model.intervals import LEVELS, coverage, ewma_volatility, interval_score, interval_scores
from flow_steps.training.evaluation import LSTM
from flow_steps.training.lstm import evaluate_split


def scores_row(
    name: str, way: str, actual: np.ndarray, intervals: dict, static: dict | None = None
) -> dict[str, object]:
    """Coverage and interval score per level; against `static`, the paired t statistic of the daily
    interval-score differences (adaptive - static; Diebold-Mariano's at one day ahead: above 1.645,
    adaptive is worse at 5%, one-sided)."""
    row: dict[str, object] = {"dataset": name, "intervals": way}
    for level in LEVELS:
        row[f"coverage {level}%"] = coverage(actual, intervals[level])
        row[f"interval score {level}%"] = interval_score(actual, intervals[level], level)
        if static is not None:
            differences = interval_scores(actual, intervals[level], level) - interval_scores(
                actual, static[level], level
            )
            spread = np.std(differences, ddof=1) / np.sqrt(len(differences))
            row[f"t {level}%"] = float(np.mean(differences) / spread) if spread > 0 else 0.0
    return row


def evaluate_file(
    path: Path, params: TrainParams, start: str | None, end: str | None, gammas: list[float]
) -> list[dict[str, object]]:
    prices = load_prices(path.read_bytes(), path.name).prices
    dates = prices[DATE_COLUMN]
    keep = (dates >= pd.Timestamp(start or dates.min())) & (dates <= pd.Timestamp(end or dates.max()))
    prices = prices[keep].reset_index(drop=True)
    n_test = holdout_size(len(prices), params.test_fraction)
    split = evaluate_split(prices, n_test, params)
    name = f"{path.name} {prices[DATE_COLUMN].iloc[0]:%Y-%m-%d}..{prices[DATE_COLUMN].iloc[-1]:%Y-%m-%d}"
    name += f", test from {split.dates.iloc[0]:%Y-%m-%d} ({n_test} days)"
    static = split.lstm_intervals[STATIC_INTERVALS]
    rows = [
        scores_row(name, STATIC_INTERVALS, split.actual, static),
        scores_row(
            name, f"adaptive, gamma {GAMMA}", split.actual, split.lstm_intervals[ADAPTIVE_INTERVALS], static
        ),
    ]
    closes = prices[PRICE_COLUMN].to_numpy(dtype=float)
    sigma = ewma_volatility(closes)[len(closes) - n_test : len(closes)]
    for gamma in gammas:
        found = adaptive_intervals(split.scores, split.actual, split.forecasts[LSTM], sigma, LEVELS, gamma)
        rows.append(scores_row(name, f"adaptive, gamma {gamma}", split.actual, found, static))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("files", nargs="+", type=Path, help="price CSV files")
    parser.add_argument("--start", help="first date kept (YYYY-MM-DD)")
    parser.add_argument("--end", help="last date kept (YYYY-MM-DD)")
    parser.add_argument("--gammas", nargs="*", type=float, default=[], help="other ACI steps to show")
    for param in TRAIN_PARAMS:
        parser.add_argument(param.flag, type=param.python_type, default=param.default, help=param.help)
    arguments = vars(parser.parse_args())
    files, start, end, gammas = (arguments.pop(key) for key in ("files", "start", "end", "gammas"))
    params = TrainParams(**arguments)
    logging.basicConfig(level=logging.WARNING)
    rows = [row for path in files for row in evaluate_file(path, params, start, end, gammas)]
    print(f"Parameters: {params}")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
