"""The history generator's rows, retention's choice and the server's index definitions (pure parts)."""

from __future__ import annotations

import random
import re
from datetime import date

from mlflow.entities import Run, RunData, RunInfo, RunTag

from deploy.history import sessions
from deploy.history_pipeline import add_retraining
from deploy.history_shapes import COLUMNS, Rows, Setting, Ticker, add_schedule_day
from deploy.indexes import INDEXES, PREFIX
from deploy.retention import lineage_of, retired

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
DAY = date(2026, 12, 4)


def history(retrainings: int = 1, days: int = 2) -> tuple[Rows, Ticker, Setting]:
    setting = Setting(experiment_id=1, schedule_experiment_id=0, artifact_root="mlflow-artifacts:", epochs=7)
    rows, ticker, rng = Rows(), Ticker("MSFT"), random.Random(0)
    for _ in range(retrainings):
        add_retraining(rows, setting, rng, ticker, DAY, 10)
    for _ in range(days):
        add_schedule_day(rows, setting, rng, ticker, DAY, 0, degraded=False)
    return rows, ticker, setting


def test_every_row_has_its_tables_columns():
    rows, _, _ = history(retrainings=2)
    for table, found in rows.tables.items():
        assert all(len(row) == len(COLUMNS[table].split()) for row in found), table


def test_a_retraining_writes_five_runs_a_version_and_a_day_a_forecast_and_a_monitor_run():
    rows, ticker, _ = history(retrainings=2, days=3)
    runs = rows.tables["runs"]
    assert rows.runs == len(runs) == 2 * 5 + 3 * 2
    assert all(RUN_ID.match(run[0]) for run in runs)
    assert all(run[6] == "FINISHED" and run[10] == "active" and run[8] > run[7] for run in runs)
    names = [run[1] for run in runs]
    assert names.count("forecast") == names.count("monitor") == 3
    assert names.count("MSFT train_model") == 2
    assert [row[1] for row in rows.tables["model_versions"]] == [1, 2] and ticker.versions == 2
    assert ticker.champion in (1, 2)
    assert all(row[0].startswith("m-") and RUN_ID.match(row[0][2:]) for row in rows.tables["logged_models"])


def test_latest_metrics_hold_each_keys_last_step_and_the_losses_one_value_an_epoch():
    rows, _, setting = history()
    history_rows = [row for row in rows.tables["metrics"] if row[0] == "train_loss"]
    assert [row[4] for row in history_rows] == list(range(setting.epochs))
    latest = {(row[5], row[0]): row for row in rows.tables["latest_metrics"]}
    by_key: dict = {}
    for key, value, _, run_id, step, _ in rows.tables["metrics"]:
        by_key[(run_id, key)] = max(by_key.get((run_id, key), (-1, 0)), (step, value))
    assert {key: (row[3], row[1]) for key, row in latest.items()} == by_key


def test_artifact_uris_follow_the_servers_layout():
    rows, _, _ = history()
    for run in rows.tables["runs"]:
        assert run[11] == f"mlflow-artifacts:/{run[12]}/{run[0]}/artifacts"


def test_sessions_are_the_weekdays_up_to_the_end():
    days = sessions(date(2026, 12, 7), 3)  # a Monday
    assert days == [date(2026, 12, 3), date(2026, 12, 4), date(2026, 12, 7)]


def run(name: str, start: int, run_id: str = "a" * 32, status: str = "FINISHED", **tags: str) -> Run:
    info = RunInfo(run_id, "0", "u", status, start, start + 1, "active", "", run_name=name)
    return Run(info, RunData(tags=[RunTag(key, value) for key, value in tags.items()]))


def test_retention_takes_old_ended_top_level_forecast_and_monitor_runs_only():
    assert retired(run("forecast", 10), 100, set())
    assert retired(run("monitor", 10), 100, set())
    assert not retired(run("forecast", 100), 100, set())  # not older than the cutoff
    assert not retired(run("MSFT train_model", 10), 100, set())
    assert not retired(run("forecast", 10, status="RUNNING"), 100, set())
    assert not retired(run("forecast", 10, **{"mlflow.parentRunId": "b" * 32}), 100, set())
    assert not retired(run("forecast", 10), 100, {"a" * 32})  # a registered version stands on it


def test_a_versions_lineage_is_its_run_the_runs_its_tags_name_the_pipeline_and_its_steps():
    tags = {
        "train": {"mlflow.parentRunId": "parent"},
        "parent": {"run_id_download_raw_data": "old-download", "run_id_register_model": "register"},
    }
    version_tags = {"train_run_id": "train", "transform_data_run_id": "transform", "code_version": "x"}
    found = lineage_of("train", version_tags, lambda run_id: tags.get(run_id, {}))
    assert found == {"train", "transform", "parent", "old-download", "register"}


def test_our_indexes_are_named_ours_and_built_without_blocking_writes():
    assert len({index.name for index in INDEXES}) == len(INDEXES)
    for index in INDEXES:
        assert index.name.startswith(PREFIX)
        assert index.create_sql().startswith(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {index.name} ON ")
        # no B-tree over a whole value column: MLflow accepts values longer than a B-tree entry may be
        whole_value_btree = "(value)" in index.definition and "USING" not in index.definition
        assert not whole_value_btree, index.definition
