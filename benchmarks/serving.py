"""Latency of the served model over HTTP, and the model's throughput in process.

    python main.py                                  # once: trains and registers stock-MSFT-lstm
    python benchmarks/serving.py                    # the champion, 300 requests per measurement

Starts `mlflow models serve --env-manager local` for --model on 127.0.0.1 and sends --requests requests
one after another from one client (each carries the latest --closes closes of the bundled sample);
reports p50, p95 and mean latency for horizon 1 and for --horizon days. Then loads the same model with
mlflow.pyfunc in this process and reports single-call latency, and batch throughput: one-step forecasts
per second when every day of the sample is scored in one call. Uses MLFLOW_TRACKING_URI like the rest
of the project (default: ./mlflow.db).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Callable

import mlflow
import numpy as np
import pandas as pd

from deploy.local_serving import invocation_payload, served_model
from flow_steps.config.names import PRICE_COLUMN
from flow_steps.data.ingest import load_prices
from flow_steps.data.sources import fetch_raw_prices


def timed(call: Callable[[], object], repeats: int) -> list[float]:
    """Wall-clock milliseconds of each of `repeats` calls, after one warm-up call."""
    call()
    durations = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        durations.append((time.perf_counter() - started) * 1000)
    return durations


def summary(name: str, durations_ms: list[float], forecasts_per_call: int) -> dict[str, object]:
    """One table row: p50, p95, mean in milliseconds, calls and forecast closes per second."""
    calls_per_second = 1000 / statistics.fmean(durations_ms)
    return {
        "measurement": name,
        "calls": len(durations_ms),
        "p50 ms": float(np.percentile(durations_ms, 50)),
        "p95 ms": float(np.percentile(durations_ms, 95)),
        "mean ms": statistics.fmean(durations_ms),
        "calls/s": calls_per_second,
        "forecasts/s": forecasts_per_call * calls_per_second,
    }


def served_latency(
    model_uri: str, closes: list[float], requests: int, horizon: int
) -> list[dict[str, object]]:
    """Latency of POST /invocations from one client on loopback, horizon 1 and `horizon`."""
    rows = []
    with served_model(model_uri, env=dict(os.environ)) as server:
        for days in (1, horizon):
            payload = invocation_payload(closes, horizon=days)

            def invoke(payload: dict = payload) -> None:
                answer = server.invoke(payload)
                answer.raise_for_status()

            rows.append(summary(f"served, horizon {days}", timed(invoke, requests), days))
    return rows


def in_process(
    model_uri: str, all_closes: np.ndarray, recent: list[float], repeats: int
) -> list[dict[str, object]]:
    """pyfunc.predict latency for one forecast, and batch one-step scoring throughput."""
    model = mlflow.pyfunc.load_model(model_uri)
    frame = pd.DataFrame({PRICE_COLUMN: recent})
    rows = [summary("pyfunc.predict, horizon 1", timed(lambda: model.predict(frame), repeats), 1)]
    forecaster = model.unwrap_python_model()
    n_days = len(all_closes) - forecaster.window
    batch = timed(lambda: forecaster.one_step_forecasts(all_closes, n_days), 5)
    rows.append(summary(f"batch: {n_days} one-step forecasts per call", batch, n_days))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="models:/stock-MSFT-lstm@champion", help="model URI to serve")
    parser.add_argument("--requests", type=int, default=300, help="requests per served measurement")
    parser.add_argument("--closes", type=int, default=250, help="closes sent with each request")
    parser.add_argument("--horizon", type=int, default=5, help="the longer horizon measured")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    raw = fetch_raw_prices("sample", "MSFT")
    prices = load_prices(raw.content, raw.resolved_source).prices
    all_closes = prices[PRICE_COLUMN].to_numpy(dtype=float)
    recent = all_closes[-arguments.closes :].tolist()

    rows = served_latency(arguments.model, recent, arguments.requests, arguments.horizon)
    rows += in_process(arguments.model, all_closes, recent, arguments.requests)
    print(f"Model {arguments.model}; {arguments.closes} closes per request; {os.cpu_count()} CPUs")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"))


if __name__ == "__main__":
    main()
