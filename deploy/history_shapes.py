"""What one ticker's day of the documented schedule writes to MLflow's tables, as rows (pure: no database).

deploy/daily.sh runs, for each ticker after the close: `forecast` (a run named `forecast`), `monitor` (a
run named `monitor`) and, when monitor finds the champion degraded, `python main.py` (a pipeline parent
and its four step children; a logged model; a registered version, alias `challenger`, and `champion`
when promoted). The keys here (run names, params, tags, metrics, datasets, model and version tags) are
those a real run of each wrote on 2026-12-06 (MLflow 3.17.2); the parameters come from the entry points'
declarations (flow_steps/config), the tag and metric names from flow_steps/config/names.py where they are
named. tests/integration/test_history.py compares them with a real pipeline on the same server.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from flow_steps.config.entry_points import BY_ENTRY_POINT
from flow_steps.config.names import (
    CHAMPION_ALIAS,
    DOWNLOAD_STEP,
    FORECAST_ENTRY_POINT,
    MONITOR_ENTRY_POINT,
    REGISTER_STEP,
    TRAIN_STEP,
    TRANSFORM_STEP,
    forecast_tags,
    registered_model_name,
)

# MLflow's columns, in the order the generator COPYs them.
COLUMNS = {
    "runs": "run_uuid name source_type source_name entry_point_name user_id status start_time end_time "
    "source_version lifecycle_stage artifact_uri experiment_id deleted_time",
    "tags": "key value run_uuid",
    "params": "key value run_uuid",
    "metrics": "key value timestamp run_uuid step is_nan",
    "latest_metrics": "key value timestamp step is_nan run_uuid",
    "datasets": "dataset_uuid experiment_id name digest dataset_source_type dataset_source dataset_schema "
    "dataset_profile",
    "inputs": "input_uuid source_type source_id destination_type destination_id step",
    "input_tags": "input_uuid name value",
    "logged_models": "model_id experiment_id name artifact_location creation_timestamp_ms "
    "last_updated_timestamp_ms status lifecycle_stage model_type source_run_id status_message",
    "logged_model_params": "model_id experiment_id param_key param_value",
    "logged_model_tags": "model_id experiment_id tag_key tag_value",
    "logged_model_metrics": "model_id metric_name metric_timestamp_ms metric_step metric_value experiment_id "
    "run_id dataset_uuid dataset_name dataset_digest",
    "registered_models": "name creation_time last_updated_time description workspace",
    "model_versions": "name version creation_time last_updated_time description user_id current_stage source "
    "run_id status status_message run_link storage_location workspace",
    "model_version_tags": "key value name version workspace",
}
TABLES = tuple(COLUMNS)  # in an order that satisfies the foreign keys

BASELINES = ("autoarima", "autoets", "knn", "linear_regression", "moving_average", "naive")
SCORES = ("directional_accuracy", "mae", "mape", "mase", "rmse", "rmse_vs_naive")
INTERVAL_SCORES = ("coverage_80", "coverage_95", "interval_score_80", "interval_score_95")
TRAIN_METRICS = sorted(
    {f"test_{name}" for name in (*SCORES, *INTERVAL_SCORES, "up_share")}
    | {f"{way}_test_{name}" for way in ("static", "adaptive") for name in INTERVAL_SCORES}
    | {f"{b}_test_{s}" for b in BASELINES for s in SCORES if (b, s) != ("naive", "rmse_vs_naive")}
    | {f"{b}_test_{s}" for b in ("autoarima", "autoets", "naive") for s in INTERVAL_SCORES}
    | {"autoarima_fit_seconds", "autoets_fit_seconds", "best_epoch", "epochs_trained"}
    | {"interval_multiplier_80", "interval_multiplier_95", "n_fit_samples", "n_test_days"}
    | {"n_validation_samples", "train_seconds"}
)
HISTORY_METRICS = ("train_loss", "val_loss")  # one value an epoch (steps 0, 1, ...)
CHECK_METRICS = ("largest_daily_move", "largest_gap_days", "largest_gap_sessions", "missing_sessions")
CHECK_METRICS += ("non_session_prices",)
TRANSFORM_METRICS = (*CHECK_METRICS, "duplicate_rows_dropped", "limit_rows_dropped", "missing_rows_dropped")
TRANSFORM_METRICS += ("rows_in", "rows_out")
PARENT_METRICS = ("naive_test_rmse", "pipeline_seconds", "test_directional_accuracy", "test_mae")
PARENT_METRICS += ("test_mase", "test_rmse", "test_rmse_vs_naive", "test_up_share")
REGISTER_METRICS = ("challenger_test_rmse", "naive_test_rmse", "skill_dm_statistic", "skill_improvement")
REGISTER_METRICS += ("skill_p_value",)
CHAMPION_METRICS = ("champion_test_rmse", "promotion_dm_statistic", "promotion_p_value")
CHAMPION_METRICS += ("promotion_mean_loss_difference", "promotion_improvement")
CHAMPION_METRICS += ("promotion_interval_dm_statistic", "promotion_interval_p_value")
MONITOR_METRICS = ("days_scored", "forecasts_scored", "realized_coverage_80", "realized_coverage_95")
MONITOR_METRICS += ("realized_days", "realized_forecasts", "realized_naive_rmse", "realized_rmse")
MONITOR_METRICS += ("realized_rmse_vs_naive", "realized_tested_days")
MONITOR_TEST_METRICS = ("realized_dm_statistic", "realized_dm_p_value") + tuple(
    f"{test}_{level}_{what}"
    for test in ("kupiec", "christoffersen")
    for level in (80, 95)
    for what in ("statistic", "p_value")
)
MONITOR_TEST_DAYS = 25  # monitor runs its coverage tests from this many scored days on
RAW_SCHEMA = {"mlflow_colspec": [{"type": "string", "name": n, "required": True} for n in ("Date", "Close")]}
PREPARED_SCHEMA = {
    "mlflow_colspec": [
        {"type": "datetime", "name": "Date", "required": True},
        {"type": "double", "name": "Close", "required": True},
    ]
}
SECONDS = {DOWNLOAD_STEP: 4, TRANSFORM_STEP: 5, TRAIN_STEP: 40, REGISTER_STEP: 5}


@dataclass
class Setting:
    """What every generated run shares: where it goes, who and what code wrote it."""

    experiment_id: int  # the pipeline's experiment (stock-market-prediction)
    schedule_experiment_id: int  # forecast and monitor runs' (Default, unless MLFLOW_EXPERIMENT_NAME)
    artifact_root: str  # the server's: mlflow-artifacts:
    user: str = "pipeline"
    code_version: str = "src-" + "0" * 64
    git_commit: str = "0" * 40
    project: str = "/srv/stock-market-prediction"
    data_source: str = "tiingo"
    hosts: tuple[str, ...] = ("worker-1", "worker-2")
    epochs: int = 30  # the train and validation loss histories' length

    def artifacts(self, experiment_id: int, run_id: str) -> str:
        return f"{self.artifact_root}/{experiment_id}/{run_id}/artifacts"


@dataclass
class Ticker:
    """One ticker's registry state as the history grows."""

    symbol: str
    versions: int = 0
    champion: int | None = None
    forecast_days: int = 0

    @property
    def model(self) -> str:
        return registered_model_name(self.symbol)


@dataclass
class Rows:
    """Rows by table, and the newest state of each registered model (aliases, last update)."""

    tables: dict[str, list[tuple]] = field(default_factory=lambda: {name: [] for name in TABLES})
    runs: int = 0

    def add(self, table: str, *row: object) -> None:
        self.tables[table].append(row)


def new_id() -> str:
    return uuid.uuid4().hex


def session_ms(day: date, seconds: float) -> int:
    """Milliseconds since the epoch, `seconds` after 22:30 UTC (the cron line's time) on `day`."""
    start = datetime(day.year, day.month, day.day, 22, 30, tzinfo=UTC).timestamp()
    return int((start + seconds) * 1000)


def declared(entry_point: str, **values: str) -> dict[str, str]:
    """The entry point's parameters as MLflow logs them: declared defaults, `values` over them."""
    params = {
        param.name: param.text(param.default)
        for param in BY_ENTRY_POINT[entry_point].params
        if param.default not in (None, "")
    }
    return {**params, **values}


def add_run(
    rows: Rows,
    setting: Setting,
    rng: random.Random,
    *,
    experiment_id: int,
    name: str,
    start: int,
    seconds: float,
    tags: dict[str, str],
    params: dict[str, str],
    metrics: dict[str, list[float]],
    source: str,
    parent: str | None = None,
) -> str:
    """One FINISHED run and its tags, params, metric history and latest metrics; its id."""
    run_id, end = new_id(), start + int(seconds * 1000)
    artifact_uri = setting.artifacts(experiment_id, run_id)
    rows.add(
        "runs",
        run_id,
        name,
        "UNKNOWN",
        "",
        "",
        setting.user,
        "FINISHED",
        start,
        end,
        "",
        "active",
        artifact_uri,
        experiment_id,
        None,
    )
    rows.runs += 1
    system = {
        "mlflow.runName": name,
        "mlflow.user": setting.user,
        "mlflow.source.git.commit": setting.git_commit,
    }
    if parent:  # a step, started by mlflow.run
        system |= {"mlflow.parentRunId": parent, "mlflow.project.backend": "local"}
        system |= {"mlflow.project.entryPoint": source, "mlflow.source.type": "PROJECT"}
        system["mlflow.source.name"] = f"file://{setting.project}"
    else:
        system |= {"mlflow.source.type": "LOCAL", "mlflow.source.git.branch": "main"}
        system["mlflow.source.name"] = source
    process = {"process_host": rng.choice(setting.hosts), "process_id": str(rng.randrange(1000, 4_000_000))}
    process["process_started"] = str(rng.randrange(10**6, 10**9))
    all_tags = {**system, "code_version": setting.code_version, **process, **tags}
    for key, value in all_tags.items():
        rows.add("tags", key, value, run_id)
    for key, value in params.items():
        rows.add("params", key, value, run_id)
    for key, values in metrics.items():
        for step, value in enumerate(values):
            rows.add("metrics", key, value, end - 100, run_id, step, False)
        rows.add("latest_metrics", key, values[-1], end - 100, len(values) - 1, False, run_id)
    return run_id


def values(rng: random.Random, names) -> dict[str, list[float]]:
    return {name: [round(rng.random(), 6)] for name in names}


def add_schedule_day(
    rows: Rows, setting: Setting, rng: random.Random, ticker: Ticker, day: date, offset: float, degraded: bool
) -> None:
    """The day's `forecast` and `monitor` runs of one ticker."""
    symbol, as_of = ticker.symbol, day.isoformat()
    common = {"company_abbreviation": symbol, "data_source": setting.data_source, "as_of": as_of}
    as_of_utc = f"{as_of}T23:59:59.999999+00:00"
    experiment = setting.schedule_experiment_id
    add_run(
        rows,
        setting,
        rng,
        experiment_id=experiment,
        name=FORECAST_ENTRY_POINT,
        start=session_ms(day, offset),
        seconds=6,
        params=declared(FORECAST_ENTRY_POINT, **common),
        tags={
            "as_of_utc": as_of_utc,
            **forecast_tags([symbol]),
            "model_version": str(ticker.champion),
            "model_uri": f"models:/{ticker.model}@{CHAMPION_ALIAS}",
        },
        metrics={},
        source=f"{setting.project}/flow_steps/forecast.py",
    )
    ticker.forecast_days += 1
    monitor_tags = {"as_of_utc": as_of_utc, "champion_version": str(ticker.champion)}
    monitor_tags["degraded"] = str(degraded).lower()
    metrics = values(rng, MONITOR_METRICS)
    if ticker.forecast_days >= MONITOR_TEST_DAYS:
        metrics |= values(rng, MONITOR_TEST_METRICS)
    else:
        monitor_tags["too_few_days"] = (
            f"{ticker.forecast_days} one-day-ahead days scored: Diebold-Mariano needs 16; Kupiec and "
            "Christoffersen at 80% need 25; Kupiec and Christoffersen at 95% need 100"
        )
    if degraded:
        monitor_tags["degradation"] = "Diebold-Mariano test: the champion's squared errors exceed naive's"
    add_run(
        rows,
        setting,
        rng,
        experiment_id=experiment,
        name=MONITOR_ENTRY_POINT,
        start=session_ms(day, offset + 8),
        seconds=1,
        params=declared(MONITOR_ENTRY_POINT, **common),
        tags=monitor_tags,
        metrics=metrics,
        source=f"{setting.project}/flow_steps/monitor.py",
    )
