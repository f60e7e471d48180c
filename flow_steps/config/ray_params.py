"""The universe's own parameters (the pipeline for many tickers on Ray); every other one is in
declarations.py. Each is declared once here; entry_points.py says which entry point takes it."""

from __future__ import annotations

from flow_steps.config.spec import Param

TICKERS = Param(
    "tickers",
    "string",
    None,
    "Tickers to run the pipeline for: comma-separated (MSFT,AAPL) or @FILE with one per line (# comments). "
    "data_source may hold {ticker}, replaced by each one.",
)
MAX_PARALLEL = Param(
    "max_parallel",
    "int",
    0,
    "Tickers run at once, one Ray task (1 CPU) each; 0: the machine's cores, or the cluster's.",
    low=0,
)
EXECUTOR = Param(
    "executor",
    "string",
    "in-worker",
    "in-worker: each Ray worker imports TensorFlow and MLflow once and runs its tickers' steps in its own "
    "process (mlflow.run with the in-process backend); process: every ticker is `python main.py` and "
    "every step its own process (full isolation; each step pays its imports again).",
    choices=("in-worker", "process"),
)
REQUESTS_PER_MINUTE = Param(
    "requests_per_minute",
    "float",
    0.0,
    "Pace of the universe's requests to its price source, across all workers: tickers start no faster. "
    "0: the source's own default, below its provider's free allowance (docs/data.md); raise it on a paid "
    "plan. Local files and the sample have no pace.",
    low=0,
)
RAY_ADDRESS = Param(
    "ray_address",
    "string",
    "",
    "An existing Ray cluster (ray://host:10001, or host:6379 from inside it); empty: $RAY_ADDRESS, else "
    "a local Ray instance.",
)
