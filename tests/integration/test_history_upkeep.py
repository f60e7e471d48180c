"""Keeping a team server's history fast and bounded: deploy/team_server.py's indexes (idempotent, kept
across restarts and `--upgrade`, only ours dropped) and deploy/retention.py followed by `mlflow gc`."""

from __future__ import annotations

import sys
import time
from datetime import date

import psycopg
import pytest
from mlflow.tracking import MlflowClient

from deploy.history import generate
from deploy.indexes import INDEXES, create_indexes, libpq_uri
from deploy.local_postgres import DB_PASSWORD
from deploy.local_team import ADMIN, TeamServer
from flow_steps.config.names import DEFAULT_EXPERIMENT
from tests.conftest import run_command
from tests.support.helpers import clean_env
from tests.support.history import admin, started_team

pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("test_history_upkeep")]
OURS = sorted(index.name for index in INDEXES)


def team_server(server: TeamServer, *options: str):
    command = [
        sys.executable,
        "deploy/team_server.py",
        "--database-uri",
        server.cluster.uri("mlflow"),
        *options,
    ]
    return run_command(command, clean_env(PGPASSWORD=DB_PASSWORD), timeout=120)


def shown(server: TeamServer) -> list[str]:
    result = team_server(server, "--show-indexes")
    assert result.returncode == 0, result.stderr[-2000:]
    return [line.split(":", 1)[0] for line in result.stdout.splitlines()]


def other_indexes(server: TeamServer) -> set[str]:
    with psycopg.connect(libpq_uri(server.cluster.uri("mlflow")), password=DB_PASSWORD) as connection:
        rows = connection.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'").fetchall()
    return {name for (name,) in rows} - set(OURS)


def sql(server: TeamServer, statement: str, *args) -> list[tuple]:
    with psycopg.connect(libpq_uri(server.cluster.uri("mlflow")), password=DB_PASSWORD) as connection:
        cursor = connection.execute(statement, args)
        return cursor.fetchall() if cursor.description else []


def test_indexes_are_made_once_kept_across_restarts_and_upgrades_and_only_ours_are_dropped():
    with started_team("--create-indexes") as server:  # a new database: MLflow's tables first, then ours
        assert shown(server) == OURS
        sql(server, "CREATE INDEX team_own_index ON runs (name)")  # someone else's
        others = other_indexes(server)
        assert {"team_own_index", "tag_pk", "param_pk", "index_tags_run_uuid"} <= others
        sql(server, "CREATE INDEX flow_steps_retired ON runs (name)")  # ours, no longer in INDEXES
        assert shown(server) == sorted([*OURS, "flow_steps_retired"])
        server.stop()
        server.start("--upgrade", "--create-indexes")  # after `mlflow db upgrade`: only the retired one goes
        server.stop()
        server.start()  # a start without the option keeps them
        assert shown(server) == OURS
        valid = (
            "SELECT indisvalid FROM pg_index JOIN pg_class ON pg_class.oid = indexrelid WHERE relname = %s"
        )
        assert all(sql(server, valid, name) == [(True,)] for name in OURS)  # no build left half done
        dropped = team_server(server, "--drop-indexes")
        assert dropped.returncode == 0, dropped.stderr[-2000:]
        assert sorted(line.removeprefix("dropped ") for line in dropped.stdout.splitlines()) == OURS
        assert shown(server) == [] and other_indexes(server) == others
        assert server.api("GET", "experiments/search", max_results=1).ok  # MLflow still serves


def test_retention_deletes_old_forecast_and_monitor_runs_but_no_lineage_and_gc_frees_their_rows(monkeypatch):
    with started_team() as server, admin(monkeypatch):
        monkeypatch.setenv("PGPASSWORD", DB_PASSWORD)
        uri = server.cluster.uri("mlflow")
        generate(uri, days=30, tickers=3, retrain_every=10, end=date.today(), seed=2)
        client = MlflowClient(server.url)
        cutoff = int((time.time() - 20 * 86_400) * 1000)
        everything = {run_id: (name, start, parent) for run_id, name, start, parent in sql(
            server, "SELECT runs.run_uuid, name, start_time, tags.value FROM runs LEFT JOIN tags ON "
            "tags.run_uuid = runs.run_uuid AND tags.key = 'mlflow.parentRunId'")}  # fmt: skip
        old_schedule = {
            run_id
            for run_id, (name, start, _) in everything.items()
            if name in ("forecast", "monitor") and start < cutoff
        }
        assert old_schedule and len(old_schedule) < len(everything) // 2
        # A registered version standing on one old forecast run: retention must keep that run.
        kept = sorted(old_schedule)[0]
        client.create_registered_model("kept-by-the-registry")
        client.create_model_version("kept-by-the-registry", f"runs:/{kept}/forecast", run_id=kept)
        lineage = {row[0] for row in sql(server, "SELECT run_id FROM model_versions")}
        lineage |= {
            row[0] for row in sql(server, "SELECT value FROM model_version_tags WHERE key LIKE '%%_run_id'")
        }

        env = clean_env(MLFLOW_TRACKING_URI=server.url)
        env.update(
            MLFLOW_TRACKING_USERNAME=ADMIN[0], MLFLOW_TRACKING_PASSWORD=ADMIN[1], PGPASSWORD=DB_PASSWORD
        )
        retention = [sys.executable, "-m", "deploy.retention", "--older-than-days", "20"]
        dry = run_command([*retention, "--dry-run"], env, timeout=300)
        assert dry.returncode == 0, dry.stderr[-2000:]
        assert set(dry.stdout.split()) == old_schedule - {kept}
        assert sql(server, "SELECT count(*) FROM runs WHERE lifecycle_stage = 'deleted'") == [(0,)]

        done = run_command(retention, env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        deleted = {
            row[0] for row in sql(server, "SELECT run_uuid FROM runs WHERE lifecycle_stage = 'deleted'")
        }
        assert deleted == old_schedule - {kept}
        assert not deleted & lineage and kept not in deleted
        parents = {parent for _, _, parent in everything.values() if parent}
        assert not deleted & parents  # no pipeline run, no step run
        experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
        champion = client.get_model_version_by_alias("stock-T0000-lstm", "champion")
        train = client.get_run(champion.run_id)
        assert train.info.lifecycle_stage == "active" and train.info.experiment_id == experiment

        tables = ("runs", "tags", "params", "metrics", "latest_metrics")
        before = {table: sql(server, f"SELECT count(*) FROM {table}")[0][0] for table in tables}
        gc = [sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", uri]
        collected = run_command(gc, env, timeout=600)
        assert collected.returncode == 0, collected.stderr[-3000:]
        for table in tables:
            column = "run_uuid"
            left = sql(server, f"SELECT count(*) FROM {table} WHERE {column} = ANY(%s)", list(deleted))[0][0]
            assert left == 0, table
        after = {table: sql(server, f"SELECT count(*) FROM {table}")[0][0] for table in tables}
        assert before["runs"] - after["runs"] == len(deleted)
        assert all(after[table] < before[table] for table in ("tags", "params"))
        assert client.get_run(kept).info.lifecycle_stage == "active"
        assert client.get_model_version_by_alias("stock-T0000-lstm", "champion").version == champion.version


def plans_logged(server: TeamServer, since: int) -> list[str]:
    """The plans auto_explain wrote to the cluster's log after byte `since`, one string each."""
    text = (server.cluster.folder / "log").read_text(errors="replace")[since:]
    return [block for block in text.split("LOG:  duration:")[1:] if "Query Text:" in block]


def test_the_servers_searches_use_indexes_made_while_it_runs(monkeypatch):
    """psycopg 3 prepares a statement it has run 5 times on a connection, and PostgreSQL may then keep one
    generic plan for it, made without the values: MLflow binds a tag's key as a parameter, so that plan
    cannot use an index limited to some keys, and the server's pooled connections keep it. The server's
    sessions plan each statement with its values (team_server.CUSTOM_PLANS): a pipeline's step-run search,
    made 12 times before the indexes exist, uses them once they are made, with no restart. The plans are
    the ones PostgreSQL's auto_explain logs for the server's own sessions."""
    with started_team() as server, admin(monkeypatch):
        monkeypatch.setenv("PGPASSWORD", DB_PASSWORD)
        uri = server.cluster.uri("mlflow")
        generate(uri, days=20, tickers=10, retrain_every=1, end=date.today(), seed=3)
        with psycopg.connect(libpq_uri(uri), password=DB_PASSWORD, autocommit=True) as connection:
            connection.execute("LOAD 'auto_explain'")  # so that its settings are known
            connection.execute("ALTER SYSTEM SET session_preload_libraries = 'auto_explain'")
            connection.execute("ALTER SYSTEM SET auto_explain.log_min_duration = 0")
            connection.execute("SELECT pg_reload_conf()")
        server.stop()
        server.start()  # its sessions load auto_explain
        client = MlflowClient(server.url)
        experiment = client.get_experiment_by_name(DEFAULT_EXPERIMENT).experiment_id
        pipelines = "params.company_abbreviation = 'T0000' and params.register_model = 'true'"
        [parent] = client.search_runs([experiment], pipelines, max_results=1)
        steps = f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        for _ in range(12):
            assert len(client.search_runs([experiment], steps)) == 4
        create_indexes(uri)
        since = (server.cluster.folder / "log").stat().st_size
        assert len(client.search_runs([experiment], steps)) == 4
        [plan] = [plan for plan in plans_logged(server, since) if "WHERE tags.key = $1" in plan]
        assert "flow_steps_tags_lookup_value" in plan, plan
