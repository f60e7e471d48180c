"""The indexes the team server adds to MLflow's PostgreSQL schema for the pipeline's searches.

    python deploy/team_server.py ... --create-indexes   # then starts the server as usual
    python deploy/team_server.py --database-uri ... --show-indexes
    python deploy/team_server.py --database-uri ... --drop-indexes

Each index is named `flow_steps_...`, made with CREATE INDEX CONCURRENTLY IF NOT EXISTS (no lock that stops
the server's writes, nothing done twice) and dropped with DROP INDEX CONCURRENTLY IF EXISTS: only ours.
They live beside MLflow's own tables and touch no column MLflow's migrations change (`mlflow db upgrade`
leaves indexes it does not know alone; tests/integration/test_history_indexes.py runs one). MLflow's
schema indexes tags and params by (key, run_uuid) and runs by run_uuid only, so a filter on a tag's or a
param's value reads every row of that key, and a filter on a run's experiment and status reads every run
(plans in docs/performance.md, "History"). None of them is on a whole value column: a B-tree entry
cannot exceed 2,704 bytes and MLflow accepts 8,000-byte values, so a B-tree over every value would make
a long tag fail to log. Hash indexes take any length, and partial ones (`WHERE key ...`) stay small and
hold only keys whose values are nearly unique, the cheap case for a hash index's inserts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from flow_steps.config.declarations import COMPANY_ABBREVIATION, DATASET_STOCK_CSV, STOCK_DATA
from flow_steps.config.names import TAG_RAW_SHA256

logger = logging.getLogger(__name__)
PREFIX = "flow_steps_"
ESCAPED_PREFIX = PREFIX.replace("_", "\\_") + "%"  # a LIKE pattern: our names only


@dataclass(frozen=True)
class Index:
    """One of our indexes: its name, what it covers (CREATE INDEX ... ON <definition>) and the query it
    serves."""

    name: str
    definition: str
    serves: str

    def create_sql(self) -> str:
        return f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {self.name} ON {self.definition}"


def _keys(*names: str) -> str:
    return ", ".join(f"'{name}'" for name in names)


INDEXES = (
    Index(
        f"{PREFIX}runs_experiment_status",
        "runs (experiment_id, status)",
        "the orphan sweep (status = 'RUNNING') and every search of one experiment's runs (mlflow ui)",
    ),
    Index(
        f"{PREFIX}tags_lookup_value",
        f"tags USING hash (value) WHERE key IN ({_keys(MLFLOW_PARENT_RUN_ID, TAG_RAW_SHA256)})",
        "a pipeline's step runs (mlflow.parentRunId), a file download's reuse (raw_sha256)",
    ),
    Index(
        f"{PREFIX}params_lookup_value",
        "params USING hash (value) WHERE key IN "
        f"({_keys(DATASET_STOCK_CSV.name, STOCK_DATA.name, COMPANY_ABBREVIATION.name)})",
        "the reuse look-ups of download, transform and train (their most selective parameter)",
    ),
)


def libpq_uri(database_uri: str) -> str:
    """`postgresql+psycopg://...` (SQLAlchemy's, as the server takes it) -> `postgresql://...` (libpq's)."""
    return "postgresql://" + database_uri.split("://", 1)[1]


def create_indexes(database_uri: str) -> list[str]:
    """Create the indexes that do not exist and drop ours that are retired (named flow_steps_... but no
    longer in INDEXES); the names of ours present after."""
    import psycopg

    current = {index.name for index in INDEXES}
    retired = [name for name, _ in show_indexes(database_uri) if name not in current]
    with psycopg.connect(libpq_uri(database_uri), autocommit=True) as connection:
        for name in retired:
            logger.info("Dropping %s: no search of the pipeline needs it now", name)
            connection.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        for index in INDEXES:
            drop_if_invalid(connection, index.name)
            logger.info("Creating %s (if missing) for %s", index.name, index.serves)
            connection.execute(index.create_sql())
    return [name for name, _ in show_indexes(database_uri)]


def tables_exist(database_uri: str) -> bool:
    """Whether MLflow has made its tables in the database (the server or `mlflow db upgrade` has run)."""
    import psycopg

    with psycopg.connect(libpq_uri(database_uri), autocommit=True) as connection:
        return connection.execute("SELECT to_regclass('public.runs') IS NOT NULL").fetchone()[0]


def drop_if_invalid(connection, name: str) -> None:
    """A CONCURRENTLY build that was interrupted leaves an invalid index of that name, which IF NOT EXISTS
    would keep: drop it first."""
    query = "SELECT 1 FROM pg_index JOIN pg_class ON pg_class.oid = indexrelid WHERE relname = %s"
    if connection.execute(query + " AND NOT indisvalid", (name,)).fetchone():
        connection.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def show_indexes(database_uri: str) -> list[tuple[str, str]]:
    """Our indexes in the database: (name, definition), by name."""
    import psycopg

    query = "SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE %s ORDER BY indexname"
    with psycopg.connect(libpq_uri(database_uri), autocommit=True) as connection:
        return [(name, definition) for name, definition in connection.execute(query, (ESCAPED_PREFIX,))]


def drop_indexes(database_uri: str) -> list[str]:
    """Drop our indexes, retired ones too (every flow_steps_... index, no other); the names dropped."""
    import psycopg

    found = [name for name, _ in show_indexes(database_uri)]
    with psycopg.connect(libpq_uri(database_uri), autocommit=True) as connection:
        for name in found:
            connection.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    return found
