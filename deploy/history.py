"""Grow a team server's history: N sessions of the documented daily schedule for M tickers, written
straight into the server's PostgreSQL through MLflow's own schema (bulk COPY), in minutes.

    export PGPASSWORD=...
    python -m deploy.history --database-uri postgresql+psycopg://mlflow@127.0.0.1:5432/mlflow \\
        --days 250 --tickers 500 [--retrain-every 10] [--end 2026-12-04] [--seed 1]

The database must already have MLflow's tables (a started team server, or `mlflow db upgrade`). Runs
per ticker and session: `forecast` and `monitor`, and every `--retrain-every` sessions (staggered across
tickers; a ticker's first session retrains, so that it has a champion) the pipeline's five runs. Sizes:
500 tickers write 3,500 runs a session retraining every session (the issue's year: `--days 257
--retrain-every 1` is about 900,000 runs) and 1,250 retraining one session in ten. Measured 2026-12-06
on 2 cores: about 1,000 runs a second (10,000 runs in 9 to 11 s), bound by the database's inserts; a later
history continues each registered model's versions and aliases.

Why it is faithful (deploy/history_shapes.py and history_pipeline.py build the rows; the slow test
tests/integration/test_history.py reads a generated history back through MlflowClient and compares it
with a real `python main.py`, `forecast` and `monitor` on the same server):
- the tables and columns MLflow's SqlAlchemyStore writes: runs (run_uuid 32 hex digits, uuid4 as MLflow
  makes them; status FINISHED; lifecycle_stage active; start/end times in milliseconds; experiment_id;
  artifact_uri `<experiment's artifact location>/<run id>/artifacts`, as the server gives runs), tags
  (mlflow.runName, mlflow.user, mlflow.source.*, mlflow.parentRunId and mlflow.project.* on steps, and the
  pipeline's own), params (the entry points' declared parameters and what the steps log), metrics (one
  row a value; train_loss and val_loss one a step) and latest_metrics (MLflow's copy of each key's last
  value, which searches and the UI read), datasets, inputs and input_tags (each step's dataset input with
  its mlflow.data.context), logged_models and their params, tags and metrics (`m-` + 32 hex), the run to
  model link (inputs RUN_OUTPUT -> MODEL_OUTPUT), registered_models, model_versions (source
  `models:/<model id>`, run_id the train run, status READY) and their tags (the lineage tags the pipeline
  sets), registered_model_aliases (champion and challenger as the promotions left them);
- experiments are made by MLflow itself (its store), so their ids and artifact locations are MLflow's.
What it does not create: artifact files (raw and prepared prices, models, forecast tables). No search
reads them: `search_runs`, the registry's reads and the UI's lists are SQL only. `monitor` downloads the
forecast tables of the runs its search finds, so a real `monitor` on a generated history fails at that
download: measure its search (benchmarks/history.py), not its run. No traces, no logged-model metrics'
datasets, no registry lock models (the pipeline deletes them).
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from datetime import date, timedelta

import psycopg

from deploy.history_pipeline import DESCRIPTION, add_retraining
from deploy.history_shapes import COLUMNS, TABLES, Rows, Setting, Ticker, add_schedule_day
from deploy.indexes import libpq_uri
from flow_steps.config.names import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    DEFAULT_EXPERIMENT,
    EXPERIMENT_KIND_TAG,
    TRAINING_EXPERIMENT_KIND,
)

logger = logging.getLogger("deploy.history")
CHUNK_RUNS = 20_000  # rows are COPYed in one transaction per this many runs
ARTIFACT_ROOT = (
    "mlflow-artifacts:"  # the team server's (--serve-artifacts): mlflow-artifacts:/<experiment id>
)


def sessions(end: date, count: int) -> list[date]:
    """The `count` weekdays up to `end` (the cron line runs Monday to Friday), oldest first."""
    days, day = [], end
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day -= timedelta(days=1)
    return days[::-1]


def ticker_symbols(count: int) -> list[str]:
    """`count` distinct ticker-like symbols: T0000, T0001, ..."""
    return [f"T{index:04d}" for index in range(count)]


def experiment_ids(database_uri: str, schedule_experiment: str | None) -> tuple[int, int]:
    """The pipeline's experiment and the forecast/monitor runs' one, made by MLflow's own store when missing
    (as `python main.py` and `forecast` would, through the server)."""
    from mlflow.entities import ExperimentTag
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(database_uri, f"{ARTIFACT_ROOT}/")
    found = []
    for name in (DEFAULT_EXPERIMENT, schedule_experiment or "Default"):
        experiment = store.get_experiment_by_name(name)
        if experiment is None:
            tags = [ExperimentTag(EXPERIMENT_KIND_TAG, TRAINING_EXPERIMENT_KIND)]
            found.append(int(store.create_experiment(name, tags=tags)))
        else:
            found.append(int(experiment.experiment_id))
    store.engine.dispose()
    return found[0], found[1]


def registry_state(connection: psycopg.Connection, tickers: list[Ticker]) -> None:
    """Continue each ticker's registered model where an earlier history left it."""
    by_model = {ticker.model: ticker for ticker in tickers}
    for name, versions in connection.execute("SELECT name, max(version) FROM model_versions GROUP BY name"):
        if name in by_model:
            by_model[name].versions = versions
    query = "SELECT name, version FROM registered_model_aliases WHERE alias = %s"
    for name, version in connection.execute(query, (CHAMPION_ALIAS,)):
        if name in by_model:
            by_model[name].champion = version


def copy_rows(connection: psycopg.Connection, rows: Rows) -> None:
    """COPY every table's rows, in foreign-key order, in one transaction."""
    with connection.transaction(), connection.cursor() as cursor:
        for table in TABLES:
            if not rows.tables[table]:
                continue
            columns = ", ".join(f'"{column}"' for column in COLUMNS[table].split())
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows.tables[table]:
                    copy.write_row(row)


def finish_registry(connection: psycopg.Connection, tickers: list[Ticker], latest: dict[str, int]) -> None:
    """The aliases as the history left them: challenger the newest version, champion the promoted one."""
    with connection.transaction():
        for ticker in tickers:
            if not ticker.versions:
                continue
            for alias, version in ((CHAMPION_ALIAS, ticker.champion), (CHALLENGER_ALIAS, ticker.versions)):
                connection.execute(
                    "INSERT INTO registered_model_aliases (alias, version, name, workspace) "
                    "VALUES (%s, %s, %s, 'default') ON CONFLICT (workspace, name, alias) "
                    "DO UPDATE SET version = EXCLUDED.version",
                    (alias, version, ticker.model),
                )
            connection.execute(
                "UPDATE registered_models SET last_updated_time = %s WHERE name = %s",
                (latest.get(ticker.model, 0), ticker.model),
            )


def generate(
    database_uri: str,
    days: int,
    tickers: int,
    retrain_every: int,
    end: date,
    seed: int,
    schedule_experiment: str | None = None,
) -> int:
    """Write the history; the number of runs written."""
    psycopg.connect(
        libpq_uri(database_uri), connect_timeout=10
    ).close()  # refused: at once, not after retries
    experiment, schedule = experiment_ids(database_uri, schedule_experiment)
    setting = Setting(experiment, schedule, ARTIFACT_ROOT)
    rng = random.Random(seed)
    states = [Ticker(symbol) for symbol in ticker_symbols(tickers)]
    total, started, latest = 0, time.monotonic(), {}
    with psycopg.connect(libpq_uri(database_uri), autocommit=True) as connection:
        registry_state(connection, states)
        rows = Rows()
        for number, day in enumerate(sessions(end, days)):
            for index, ticker in enumerate(states):
                retrain = ticker.champion is None or (number + index) % retrain_every == 0
                if ticker.champion is not None:
                    add_schedule_day(rows, setting, rng, ticker, day, index * 7.0, degraded=retrain)
                if retrain:
                    if ticker.versions == 0:
                        created = int(time.mktime(day.timetuple()) * 1000)
                        rows.add(
                            "registered_models",
                            ticker.model,
                            created,
                            created,
                            DESCRIPTION.format(model=ticker.model),
                            "default",
                        )
                    latest[ticker.model] = add_retraining(rows, setting, rng, ticker, day, index * 7.0 + 10)[
                        "created"
                    ]
            if rows.runs >= CHUNK_RUNS or number == days - 1:
                copy_rows(connection, rows)
                total += rows.runs
                rows = Rows()
                seconds = time.monotonic() - started
                logger.info(
                    "session %d/%d (%s): %d runs written, %.0f runs/s",
                    number + 1,
                    days,
                    day,
                    total,
                    total / max(seconds, 1e-9),
                )
        finish_registry(connection, states, latest)
        # As a year of autovacuum leaves them (hint bits and visibility map set, statistics current): else
        # the first searches after a bulk write share the disks and cores with autovacuum's catching up.
        for table in ("runs", "tags", "params", "metrics", "latest_metrics", "model_versions"):
            connection.execute(f"VACUUM (ANALYZE) {table}")
    logger.info("%d runs in %.0f s", total, time.monotonic() - started)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-uri", required=True, help="postgresql+psycopg://USER@HOST:PORT/DB")
    parser.add_argument("--days", type=int, required=True, help="sessions (weekdays) of history")
    parser.add_argument("--tickers", type=int, required=True)
    parser.add_argument(
        "--retrain-every", type=int, default=10, help="sessions between a ticker's retrainings"
    )
    parser.add_argument("--end", type=date.fromisoformat, default=date.today(), help="the last session")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--schedule-experiment",
        help="experiment of forecast and monitor runs (default: Default, as deploy/daily.sh without "
        "MLFLOW_EXPERIMENT_NAME); stock-market-prediction puts every run in the pipeline's",
    )
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if arguments.days < 1 or arguments.tickers < 1 or arguments.retrain_every < 1:
        raise SystemExit("history: --days, --tickers and --retrain-every must be at least 1")
    try:
        generate(
            arguments.database_uri,
            arguments.days,
            arguments.tickers,
            arguments.retrain_every,
            arguments.end,
            arguments.seed,
            arguments.schedule_experiment,
        )
    except Exception as error:  # a database refused or unreachable, a table missing: one line, exit 1
        original = getattr(error, "orig", None) or error
        raise SystemExit(f"history: {' '.join(str(original).split())}") from None


if __name__ == "__main__":
    main()
