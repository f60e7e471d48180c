"""How the team server's searches grow with a team's history: p50/p95 of every query the pipeline makes, and
of `mlflow ui`'s experiment and model pages, at given history sizes, without and with our indexes.

    python benchmarks/history.py --sizes 0,10000                        # a small check: about 3 minutes
    python benchmarks/history.py --sizes 0,100000,300000,900000 --tickers 500 --pipeline   # the full one
    python benchmarks/history.py --sizes 20000 --explain                # and the plans of each search

1. Starts a throwaway PostgreSQL cluster and the team server (deploy/local_team.py: basic-auth, proxied
   artifacts) and a user `pipeline` (READ by default, as a team's users read each other's runs).
2. For each size, in increasing order, grows the history to about that many runs (deploy/history.py:
   the documented daily schedule for `--tickers` tickers, retraining one session in `--retrain-every`),
   then times each search of benchmarks/history_queries.py `--repeats` times through the server as that
   user (each call until its answer is read), first without our indexes, then with them
   (deploy/indexes.py: what `team_server.py --create-indexes` makes). Size 0 is the near-empty database
   (one retraining per ticker, so that every query has a target).
3. With `--pipeline`, runs one ticker's `python main.py` through the server at each size (small settings,
   registering), then the same with `--reuse-training` (fully reused): their walls, the issue's measure;
   `--pipeline-repeats N` runs each N times: the median wall and its range.
4. With `--explain`, prints PostgreSQL's plan (EXPLAIN ANALYZE) of each search's main query, straight
   on the database, at each size and index setting.
Prints one table: a row per search, a column per size and index setting, `p50 / p95` in milliseconds.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import mlflow
import pandas as pd
from history_queries import find_target, queries
from mlflow.tracking import MlflowClient

from deploy.history import generate, sessions
from deploy.indexes import create_indexes, drop_indexes, libpq_uri
from deploy.local_postgres import DB_PASSWORD, PostgresCluster
from deploy.local_team import ADMIN, TeamServer

logger = logging.getLogger("benchmarks.history")
USER = ("pipeline", "pipeline-pw-history-7c1e")
PROJECT = Path(__file__).resolve().parents[1]
PIPELINE_OPTIONS = ["--max-row-limit", "1500", "--epochs", "5", "--window", "30", "--lstm-units", "16"]


def runs_per_session(tickers: int, retrain_every: int) -> float:
    return tickers * (2 + 5 / retrain_every)


def timed(call, client: MlflowClient, repeats: int) -> tuple[float, float]:
    """p50 and p95 in milliseconds of `repeats` calls (after one warm-up call)."""
    call(client)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        call(client)
        seconds.append(time.perf_counter() - started)
    ordered = sorted(seconds)
    return statistics.median(ordered) * 1000, ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] * 1000


def run_count(uri: str) -> int:
    import psycopg

    with psycopg.connect(libpq_uri(uri), password=DB_PASSWORD) as connection:
        return connection.execute("SELECT count(*) FROM runs").fetchone()[0]


def autovacuum_workers(uri: str) -> int:
    """Autovacuum workers busy now: a condition of the timings (they share the cores)."""
    import psycopg

    query = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
    with psycopg.connect(libpq_uri(uri), password=DB_PASSWORD) as connection:
        return connection.execute(query).fetchone()[0]


def explain(uri: str, target, label: str) -> None:
    """Print the plan of each search's main query (the first SELECT on runs or the registry) on `uri`."""
    from sqlalchemy import event

    client = MlflowClient(uri)
    mlflow.set_tracking_uri(uri)
    engines = [client._tracking_client.store.engine, client._get_registry_client().store.engine]
    state = {"query": None}

    def hook(connection, cursor, statement, parameters, context, executemany):
        if state["query"] and statement.lstrip().startswith("SELECT") and "pg_catalog" not in statement:
            cursor.execute("EXPLAIN (ANALYZE) " + statement, parameters)
            print(f"--- {label} | {state['query']}\n" + "\n".join(row[0] for row in cursor.fetchall()))
            state["query"] = None  # the main query only, not the reads of its runs' tags and params

    for engine in engines:
        event.listen(engine, "before_cursor_execute", hook)
    for name, call in queries(target).items():
        state["query"] = name
        call(client)
    for engine in engines:
        event.remove(engine, "before_cursor_execute", hook)


def pipeline_walls(server: TeamServer, repeats: int) -> dict[str, str]:
    """One ticker's pipeline through the server (it trains), then fully reused, `repeats` times each:
    the median wall in seconds and the range."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    env.update(
        MLFLOW_TRACKING_URI=server.url, MLFLOW_TRACKING_USERNAME=ADMIN[0], MLFLOW_TRACKING_PASSWORD=ADMIN[1]
    )
    walls = {}
    for label, extra in (
        ("ticker wall, trains (s)", []),
        ("ticker wall, fully reused (s)", ["--reuse-training"]),
    ):
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            command = [sys.executable, "main.py", *PIPELINE_OPTIONS, *extra]
            subprocess.run(command, cwd=PROJECT, env=env, check=True, capture_output=True, timeout=1800)
            seconds.append(time.perf_counter() - started)
        spread = f" ({min(seconds):.1f}-{max(seconds):.1f})" if repeats > 1 else ""
        walls[label] = f"{statistics.median(seconds):.1f}{spread}"
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="0,10000", help="history sizes in runs, increasing")
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--retrain-every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--pipeline", action="store_true", help="time one ticker's pipeline at each size")
    parser.add_argument("--pipeline-repeats", type=int, default=1, help="runs of each pipeline timed")
    parser.add_argument("--explain", action="store_true", help="print each search's plan")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sizes = [int(size) for size in arguments.sizes.split(",")]
    per_session = runs_per_session(arguments.tickers, arguments.retrain_every)
    total_sessions = max(1, math.ceil(max(sizes) / per_session))
    days = sessions(date.today(), total_sessions + 1)
    folder = Path(tempfile.mkdtemp(prefix="history-benchmark-"))
    (folder / "artifacts").mkdir()
    cluster = PostgresCluster()
    server = TeamServer(cluster, folder / "artifacts")
    os.environ["PGPASSWORD"] = DB_PASSWORD
    table: dict[str, dict[str, str]] = {}
    try:
        cluster.init().start()
        cluster.create_database("mlflow")
        cluster.create_database("mlflow_auth")
        server.start()
        server.create_user(*USER)
        uri, written = cluster.uri("mlflow"), 0
        for size in sizes:
            wanted = max(1, math.ceil(size / per_session)) if size else 1
            if wanted > written:
                generate(uri, wanted - written, arguments.tickers, arguments.retrain_every,
                         days[wanted - 1], seed=wanted)  # fmt: skip
                written = wanted
            runs = run_count(uri)
            logger.info("%d runs; autovacuum workers busy: %d", runs, autovacuum_workers(uri))
            os.environ.update(MLFLOW_TRACKING_USERNAME=USER[0], MLFLOW_TRACKING_PASSWORD=USER[1])
            client = MlflowClient(server.url)
            mlflow.set_tracking_uri(server.url)
            target = find_target(client, "T0001")
            for indexed in (False, True):
                (create_indexes if indexed else drop_indexes)(uri)
                column = f"{runs:,} runs{', indexed' if indexed else ''}"
                if arguments.explain:
                    explain(uri, target, column)
                    mlflow.set_tracking_uri(server.url)
                for name, call in queries(target).items():
                    p50, p95 = timed(call, client, arguments.repeats)
                    table.setdefault(name, {})[column] = f"{p50:.1f} / {p95:.1f}"
                    logger.info("%s, %s: p50 %.1f ms, p95 %.1f ms", column, name, p50, p95)
                if arguments.pipeline:
                    for name, wall in pipeline_walls(server, arguments.pipeline_repeats).items():
                        table.setdefault(name, {})[column] = wall
            drop_indexes(uri)
    finally:
        server.stop()
        cluster.remove()
        shutil.rmtree(folder, ignore_errors=True)
    print(pd.DataFrame(table).T.fillna("").to_markdown())


if __name__ == "__main__":
    main()
