"""What one retraining (`python main.py` of deploy/daily.sh) writes, as rows: the pipeline's parent run
and its four step runs, two datasets, a logged model, a registered version and its aliases (pure)."""

from __future__ import annotations

import json
import random
from datetime import date

from deploy.history_shapes import (
    CHAMPION_METRICS,
    CHECK_METRICS,
    HISTORY_METRICS,
    PARENT_METRICS,
    PREPARED_SCHEMA,
    RAW_SCHEMA,
    REGISTER_METRICS,
    SECONDS,
    TRAIN_METRICS,
    TRANSFORM_METRICS,
    Rows,
    Setting,
    Ticker,
    add_run,
    declared,
    new_id,
    session_ms,
    values,
)
from flow_steps.config.entry_points import BY_ENTRY_POINT
from flow_steps.config.names import (
    DOWNLOAD_STEP,
    MAIN_ENTRY_POINT,
    PIPELINE_STEPS,
    REGISTER_STEP,
    TRAIN_STEP,
    TRANSFORM_STEP,
)
from flow_steps.orchestration.driver import describe_run

PROMOTED_SHARE = 0.3  # of retrainings whose challenger beats the champion by evidence
DESCRIPTION = (
    "{model}: forecasts the next trading days' closing prices of one stock with a two-layer LSTM. "
    "Made by the stock-market-prediction pipeline (generated history: deploy/history.py)."
)


def add_retraining(
    rows: Rows, setting: Setting, rng: random.Random, ticker: Ticker, day: date, offset: float
) -> dict[str, object]:
    """The pipeline's five runs, its datasets, logged model and registered version; the registry's new
    state of the ticker (aliases) in the returned dict."""
    symbol, as_of, experiment = ticker.symbol, day.isoformat(), setting.experiment_id
    main_params = declared(
        MAIN_ENTRY_POINT, company_abbreviation=symbol, data_source=setting.data_source, as_of=as_of
    )
    start = session_ms(day, offset)
    parent = add_run(
        rows,
        setting,
        rng,
        experiment_id=experiment,
        name=describe_run(main_params),
        start=start,
        seconds=sum(SECONDS.values()) + 2,
        tags={},
        params=main_params,
        metrics={},
        source="main.py",
    )
    clock = start + 200
    runs: dict[str, str] = {}

    def step(entry_point: str, params: dict[str, str], tags: dict[str, str], metrics) -> str:
        nonlocal clock
        runs[entry_point] = add_run(
            rows,
            setting,
            rng,
            experiment_id=experiment,
            name=f"{symbol} {entry_point}",
            start=clock,
            seconds=SECONDS[entry_point],
            tags=tags,
            params=params,
            metrics=metrics,
            source=entry_point,
            parent=parent,
        )
        clock += SECONDS[entry_point] * 1000 + 100
        return runs[entry_point]

    raw_uri = f"{setting.artifacts(experiment, '{run}')}/raw-data/{symbol}.csv"
    download = step(
        DOWNLOAD_STEP,
        declared(DOWNLOAD_STEP, company_abbreviation=symbol, data_source=setting.data_source, as_of=as_of),
        {
            "as_of_utc": f"{as_of}T23:59:59.999999+00:00",
            "data_source_resolved": f"tiingo:{symbol}",
            "date_format_resolved": "ISO8601",
            "raw_first_date": "2014-01-02",
            "raw_last_date": as_of,
            "raw_rows": "3000",
            "raw_sha256": new_id() + new_id(),
        },
        values(rng, CHECK_METRICS),
    )
    raw_uri = raw_uri.replace("{run}", download)
    transform = step(
        TRANSFORM_STEP,
        declared(TRANSFORM_STEP, dataset_stock_csv=raw_uri),
        {
            "date_format_resolved": "ISO8601",
            "price_column": "Adj Close",
            "source_newest_first": "False",
            "ticker": symbol,
        },
        values(rng, TRANSFORM_METRICS),
    )
    add_dataset(rows, experiment, symbol, raw_uri, RAW_SCHEMA, 3000, transform, "raw")
    prepared = f"{setting.artifacts(experiment, transform)}/transformed-data/prices.csv"
    train_params = declared(TRAIN_STEP, stock_data=prepared)
    train_params |= {
        "calibration_scores": json.dumps([round(rng.random(), 6) for _ in range(20)]),
        "interval_multiplier_80": "1.88",
        "interval_multiplier_95": "2.79",
        "return_scale": "0.0127",
        "trained_through": as_of,
    }
    history = {name: [round(rng.random(), 6) for _ in range(setting.epochs)] for name in HISTORY_METRICS}
    train = step(
        TRAIN_STEP,
        train_params,
        {"stock_data_sha256": new_id() + new_id()},
        values(rng, TRAIN_METRICS) | history,
    )
    add_dataset(rows, experiment, symbol, prepared, PREPARED_SCHEMA, 3000, train, "training")
    model_id = add_logged_model(rows, setting, rng, ticker, train, clock - 3000, train_params)

    ticker.versions += 1
    version, before = ticker.versions, ticker.champion
    decision = (
        "first_version" if before is None else ("promoted" if rng.random() < PROMOTED_SHARE else "kept")
    )
    if decision != "kept":
        ticker.champion = version
    register_tags = {
        "challenger_score_source": "train_model run, same prices and test days",
        "champion_version": str(ticker.champion),
        "champion_version_before": str(before or ""),
        "model_version": str(version),
        "no_skill_over_naive": "true",
        "promotion": decision,
        "promotion_reason": f"{decision}: generated history",
        "registered_model": ticker.model,
    }
    register_metrics = values(rng, REGISTER_METRICS)
    if before is not None:
        register_tags["champion_score_source"] = "train_model run, same prices and test days"
        register_metrics |= values(rng, CHAMPION_METRICS)
    model_uri = f"runs:/{train}/model"
    register = step(
        REGISTER_STEP,
        declared(REGISTER_STEP, model_uri=model_uri, stock_data=prepared, model_name=ticker.model),
        register_tags,
        register_metrics,
    )
    created = clock - 1500
    storage = f"{setting.artifact_root}/{experiment}/models/{model_id}/artifacts"
    rows.add(
        "model_versions",
        ticker.model,
        version,
        created,
        created + 300,
        f"{decision}: generated history",
        "",
        "None",
        f"models:/{model_id}",
        train,
        "READY",
        "",
        "",
        storage,
        "default",
    )
    version_tags = {
        "train_run_id": train,
        "code_version": setting.code_version,
        "trained_through": as_of,
        f"{DOWNLOAD_STEP}_run_id": download,
        f"{TRANSFORM_STEP}_run_id": transform,
        "data_source_resolved": f"tiingo:{symbol}",
        "raw_sha256": new_id() + new_id(),
        "promotion": decision,
        "no_skill_over_naive": "true",
    }
    for key, value in version_tags.items():
        rows.add("model_version_tags", key, value, ticker.model, version, "default")
    parent_tags = {f"run_id_{name}": runs[name] for name in PIPELINE_STEPS}
    parent_tags |= {f"reused_{name}": "false" for name in PIPELINE_STEPS}
    parent_tags |= {
        "champion_version": str(ticker.champion),
        "model_uri": model_uri,
        "model_version": str(version),
        "promotion": decision,
        "registered_model": ticker.model,
    }
    for key, value in parent_tags.items():
        rows.add("tags", key, value, parent)
    for key, value in values(rng, PARENT_METRICS).items():
        rows.add("metrics", key, value[0], clock, parent, 0, False)
        rows.add("latest_metrics", key, value[0], clock, 0, False, parent)
    return {"register": register, "version": version, "created": created}


def add_logged_model(
    rows: Rows,
    setting: Setting,
    rng: random.Random,
    ticker: Ticker,
    train: str,
    at: int,
    train_params: dict[str, str],
) -> str:
    """The train run's logged model (`model`), its params, tags and metrics, and the run-to-model link."""
    experiment, model_id = setting.experiment_id, f"m-{new_id()}"
    location = f"{setting.artifact_root}/{experiment}/models/{model_id}/artifacts"
    rows.add(
        "logged_models",
        model_id,
        experiment,
        "model",
        location,
        at,
        at + 1000,
        2,
        "active",
        None,
        train,
        None,
    )
    for key in (param.name for param in BY_ENTRY_POINT[TRAIN_STEP].params):  # as mlflow.keras logs them
        rows.add("logged_model_params", model_id, experiment, key, train_params[key])
    tags = {
        "mlflow.user": setting.user,
        "mlflow.source.name": f"{setting.project}/flow_steps/train_model.py",
        "mlflow.source.type": "LOCAL",
        "mlflow.source.git.commit": setting.git_commit,
        "mlflow.source.git.branch": "main",
        "mlflow.modelVersions": json.dumps([{"name": ticker.model, "version": ticker.versions + 1}]),
    }
    for key, value in tags.items():
        rows.add("logged_model_tags", model_id, experiment, key, value)
    for key in TRAIN_METRICS:
        rows.add(
            "logged_model_metrics",
            model_id,
            key,
            at,
            0,
            round(rng.random(), 6),
            experiment,
            train,
            None,
            None,
            None,
        )
    rows.add("inputs", new_id(), "RUN_OUTPUT", train, "MODEL_OUTPUT", model_id, 0)
    return model_id


def add_dataset(
    rows: Rows, experiment_id: int, symbol: str, uri: str, schema: dict, count: int, run_id: str, context: str
) -> None:
    """A dataset (`<TICKER> prices`) logged as an input of `run_id` with its context tag."""
    dataset = new_id()
    rows.add(
        "datasets",
        dataset,
        experiment_id,
        f"{symbol} prices",
        new_id()[:8],
        "artifact",
        json.dumps({"uri": uri}),
        json.dumps(schema),
        json.dumps({"num_rows": count, "num_elements": count * len(schema["mlflow_colspec"])}),
    )
    link = new_id()
    rows.add("inputs", link, "DATASET", dataset, "RUN", run_id, 0)
    rows.add("input_tags", link, "mlflow.data.context", context)
