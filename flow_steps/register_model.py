"""Step 4: register the trained model, and make it the champion only if it beats the current one.

The new version gets the alias `challenger` and tags with its evaluation metrics and data lineage.
Both models are scored on the new model's test days, next to the naive forecast; the alias `champion`
moves to the new version only when its RMSE is lower. The first version of a model becomes champion.
A model's score is the test RMSE its train_model run logged when that run was tested on exactly these
days (the same prepared prices, by SHA-256, and the same number of test days); otherwise the model is
loaded and scored here, which costs a TensorFlow start-up.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import click
import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from flow_steps.config.declarations import TEST_FRACTION, WINDOW
from flow_steps.config.entry_points import options
from flow_steps.config.errors import DataValidationError, PipelineError
from flow_steps.config.names import (
    ALREADY_REGISTERED,
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    DATE_COLUMN,
    DOWNLOAD_STEP,
    FIRST_VERSION,
    KEPT,
    MAX_HORIZON,
    METRIC_CHALLENGER_TEST_RMSE,
    METRIC_CHAMPION_TEST_RMSE,
    METRIC_NAIVE_TEST_RMSE,
    METRIC_TEST_RMSE,
    PRICE_COLUMN,
    PROMOTED,
    REGISTER_STEP,
    SCORED_FROM_TRAINING,
    SCORED_HERE,
    TAG_CHALLENGER_SCORE_SOURCE,
    TAG_CHAMPION_SAW_TEST_DAYS,
    TAG_CHAMPION_SCORE_SOURCE,
    TAG_CHAMPION_VERSION,
    TAG_CHAMPION_VERSION_BEFORE,
    TAG_CHILD_RUN_PREFIX,
    TAG_CODE_VERSION,
    TAG_DATA_SOURCE,
    TAG_MODEL_VERSION,
    TAG_PROMOTION,
    TAG_PROMOTION_REASON,
    TAG_RAW_SHA256,
    TAG_REGISTERED_MODEL,
    TAG_STOCK_DATA_SHA256,
    TAG_TRAIN_RUN_ID,
    TAG_TRAINED_THROUGH,
    TRANSFORM_STEP,
)
from flow_steps.model.features import holdout_size
from flow_steps.registry.lock import promotion_lock
from flow_steps.runtime.inputs import input_file, read_prepared
from flow_steps.runtime.interruption import interruptions_held
from flow_steps.runtime.lifecycle import local_input, refusals_explained, run_step
from flow_steps.runtime.lineage import sha256_bytes
from flow_steps.runtime.store import race_hold
from flow_steps.runtime.tracking import is_refusal
from flow_steps.training.evaluation import naive_forecast, rmse

logger = logging.getLogger(__name__)

RUNS_URI = re.compile(r"^runs:/(?P<run_id>[0-9a-f]{32})/(?P<path>.+)$")
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Promotion:
    """Whether the new version becomes champion, and why, in one line."""

    decision: str
    reason: str

    @property
    def promotes(self) -> bool:
        return self.decision in (FIRST_VERSION, PROMOTED)


def decide_promotion(
    challenger_rmse: float, champion_version: str | None, champion_rmse: float | None
) -> Promotion:
    """The new version replaces the champion only with a strictly lower RMSE on the same test days."""
    if champion_version is None:
        return Promotion(FIRST_VERSION, "no champion yet: the first version becomes champion")
    if champion_rmse is None:
        return Promotion(KEPT, f"champion version {champion_version} cannot be scored on these test days")
    if challenger_rmse < champion_rmse:
        return Promotion(
            PROMOTED,
            f"RMSE {challenger_rmse:.6g} beats champion version {champion_version}'s {champion_rmse:.6g}",
        )
    return Promotion(
        KEPT,
        f"RMSE {challenger_rmse:.6g} does not beat champion version {champion_version}'s {champion_rmse:.6g}",
    )


@dataclass(frozen=True)
class HoldoutDays:
    """The closes a model is scored on: every close, how many of the last ones are test days, and the
    SHA-256 of the prepared prices file they came from ("" when unknown)."""

    closes: np.ndarray
    dates: pd.Series
    n_test: int
    prices_sha256: str = ""

    @property
    def actual(self) -> np.ndarray:
        return self.closes[-self.n_test :]


def holdout_days(prices: pd.DataFrame, test_fraction: float, prices_sha256: str = "") -> HoldoutDays:
    """The test days train_model held out from `prices` with `test_fraction`."""
    return HoldoutDays(
        closes=prices[PRICE_COLUMN].to_numpy(dtype=float),
        dates=prices[DATE_COLUMN],
        n_test=holdout_size(len(prices), test_fraction),
        prices_sha256=prices_sha256,
    )


def score(model_uri: str, days: HoldoutDays) -> float:
    """RMSE of a registered LSTM's one-step forecasts of the test days (loaded like serving does)."""
    with interruptions_held():  # a signal stops it after TensorFlow's work, never inside it
        forecaster = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
        return rmse(days.actual, forecaster.one_step_forecasts(days.closes, days.n_test))


def score_from_training(train: Run, days: HoldoutDays) -> float | None:
    """The test RMSE `train` logged, if it was tested on exactly these days; else None."""
    tags, metrics = train.data.tags, train.data.metrics
    same_days = (
        bool(days.prices_sha256)
        and tags.get(TAG_STOCK_DATA_SHA256) == days.prices_sha256
        and metrics.get("n_test_days") == days.n_test
    )
    return metrics.get(METRIC_TEST_RMSE) if same_days else None


def model_score(model_uri: str, train: Run, days: HoldoutDays) -> tuple[float, str]:
    """A model's RMSE on the test days and where it came from (its training run, or scored here)."""
    logged = score_from_training(train, days)
    if logged is not None:
        return logged, SCORED_FROM_TRAINING
    return score(model_uri, days), SCORED_HERE


def train_run_id(model_uri: str) -> str:
    """The run id in a `runs:/<run id>/<path>` URI."""
    match = RUNS_URI.match(model_uri)
    if not match:
        raise PipelineError(
            f"model_uri '{model_uri}' is not a runs:/<run id>/<path> URI of a train_model run"
        )
    return match["run_id"]


def lineage_tags(client: MlflowClient, train: Run, days: HoldoutDays) -> dict[str, str]:
    """The tags tools need: the training run, code, data (source and hash) and last training day.

    Scores live on the logged model (its metrics) and in the version's description; parameters on
    the training run.
    """
    tags = {
        TAG_TRAIN_RUN_ID: train.info.run_id,
        TAG_CODE_VERSION: train.data.tags.get(TAG_CODE_VERSION, ""),
        TAG_TRAINED_THROUGH: _day(days.dates.iloc[-days.n_test - 1]),
    }
    parent_id = train.data.tags.get(MLFLOW_PARENT_RUN_ID)
    if parent_id:  # the pipeline's parent run knows the download and transform runs
        parent = client.get_run(parent_id).data.tags
        for step in (DOWNLOAD_STEP, TRANSFORM_STEP):
            if TAG_CHILD_RUN_PREFIX + step in parent:
                tags[f"{step}_run_id"] = parent[TAG_CHILD_RUN_PREFIX + step]
        if f"{DOWNLOAD_STEP}_run_id" in tags:
            download = client.get_run(tags[f"{DOWNLOAD_STEP}_run_id"]).data.tags
            tags.update(
                {name: download[name] for name in (TAG_DATA_SOURCE, TAG_RAW_SHA256) if name in download}
            )
    return tags


def register(model_uri: str, stock_data: str, test_fraction: float, model_name: str) -> None:
    """Register `model_uri` as a new version of `model_name`, tag it, and move the aliases."""
    if not MODEL_NAME_PATTERN.match(model_name):
        raise PipelineError(f"model_name '{model_name}' must be letters, digits, '.', '_' or '-'")
    TEST_FRACTION.check(test_fraction)
    run_id = train_run_id(model_uri)
    prices_sha256 = sha256_bytes(input_file(stock_data, "stock_data").read_bytes())
    days = holdout_days(read_prepared(stock_data, "stock_data"), test_fraction, prices_sha256)
    client = MlflowClient()
    try:
        train = client.get_run(run_id)
    except MlflowException as error:
        raise PipelineError(f"model_uri '{model_uri}': no such run in this tracking store") from error
    with (
        refusals_explained(f"register versions of registered model '{model_name}'", "EDIT"),
        promotion_lock(client, model_name),  # concurrent registrations decide one at a time
    ):
        _register_and_promote(client, train, model_uri, model_name, days)


def _register_and_promote(
    client: MlflowClient, train: Run, model_uri: str, model_name: str, days: HoldoutDays
) -> None:
    """The registry's part of `register`: a version, its tags and description, the aliases."""
    run_id = train.info.run_id
    version, is_new = _registered_version(client, model_name, model_uri, run_id)
    champion = _alias_version(client, model_name, CHAMPION_ALIAS)
    race_hold()  # tests only: the window in which another registration would read the same champion
    challenger_rmse, source = model_score(f"models:/{model_name}/{version.version}", train, days)
    naive_rmse = rmse(days.actual, naive_forecast(days.closes, days.n_test))
    mlflow.log_metrics({METRIC_CHALLENGER_TEST_RMSE: challenger_rmse, METRIC_NAIVE_TEST_RMSE: naive_rmse})
    mlflow.set_tag(TAG_CHALLENGER_SCORE_SOURCE, source)
    if is_new:
        promotion = _compare_with_champion(client, model_name, champion, challenger_rmse, days)
        version_tags = {**lineage_tags(client, train, days), TAG_PROMOTION: promotion.decision}
        for key, value in version_tags.items():
            client.set_model_version_tag(model_name, version.version, key, value)
        client.update_model_version(
            model_name,
            version.version,
            version_description(challenger_rmse, naive_rmse, days, promotion, train.data.metrics),
        )
        client.set_registered_model_alias(model_name, CHALLENGER_ALIAS, version.version)
        if promotion.promotes:
            client.set_registered_model_alias(model_name, CHAMPION_ALIAS, version.version)
    else:
        promotion = Promotion(ALREADY_REGISTERED, f"run {run_id} is already version {version.version}")

    champion_now = _alias_version(client, model_name, CHAMPION_ALIAS)
    mlflow.set_tags(
        {
            TAG_REGISTERED_MODEL: model_name,
            TAG_MODEL_VERSION: str(version.version),
            TAG_CHAMPION_VERSION: str(champion_now.version) if champion_now else "",
            TAG_CHAMPION_VERSION_BEFORE: str(champion.version) if champion else "",
            TAG_PROMOTION: promotion.decision,
            TAG_PROMOTION_REASON: promotion.reason,
        }
    )
    logger.info(
        "%s version %s (test RMSE %.6g, naive %.6g): %s; champion is version %s",
        model_name,
        version.version,
        challenger_rmse,
        naive_rmse,
        promotion.reason,
        champion_now.version if champion_now else "none",
    )


def version_description(
    challenger_rmse: float,
    naive_rmse: float,
    days: HoldoutDays,
    promotion: Promotion,
    training_metrics: dict[str, float] | None = None,
) -> str:
    """One line for the registry page: the score against naive, the intervals' coverage (from the
    training run's test days), the data, the decision and why."""
    ratio = challenger_rmse / naive_rmse
    metrics = training_metrics or {}
    coverage = ""
    if "test_coverage_80" in metrics and "test_coverage_95" in metrics:
        coverage = (
            f"; 80%/95% intervals covered {metrics['test_coverage_80']:.1%}/{metrics['test_coverage_95']:.1%}"
        )
    return (
        f"Test RMSE {challenger_rmse:.4g} = {ratio:.3f} x naive over {days.n_test} days "
        f"{_day(days.dates.iloc[-days.n_test])}..{_day(days.dates.iloc[-1])}{coverage}; trained through "
        f"{_day(days.dates.iloc[-days.n_test - 1])}; {promotion.decision}: {promotion.reason}"
    )


def model_description(model_name: str) -> str:
    """What the registered model is, for its registry page."""
    return (
        f"{model_name}: forecasts the next business days' closing prices of one stock with a two-layer LSTM. "
        "Input: a DataFrame with a 'Close' column of chronological closes (at least the model's window, "
        f"{WINDOW.default} by default), in any price units; optional request param 'horizon' "
        f"(1-{MAX_HORIZON} business days). Output: "
        "one row per day ahead, 'days_ahead' and 'forecast_close'. Every version is scored on its test days "
        "next to the naive forecast (tomorrow = today); the alias 'challenger' marks the newest version, "
        "and 'champion' moves to a new version only when its RMSE on those days is strictly lower than "
        "the current champion's on the same days. Made by the stock-market-prediction pipeline."
    )


def _compare_with_champion(
    client: MlflowClient,
    model_name: str,
    champion: ModelVersion | None,
    challenger_rmse: float,
    days: HoldoutDays,
) -> Promotion:
    """Score the champion on these test days, log its score, and decide; warn if it saw those days."""
    if champion is None:
        return decide_promotion(challenger_rmse, None, None)
    champion_rmse = _champion_score(client, model_name, champion, days)
    if champion_rmse is not None:
        mlflow.log_metric(METRIC_CHAMPION_TEST_RMSE, champion_rmse)
    if champion.tags.get(TAG_TRAINED_THROUGH, "") >= _day(days.dates.iloc[-days.n_test]):
        logger.warning(
            "Champion version %s was trained on data through %s, on or after the first test day: "
            "its score on these days is optimistic",
            champion.version,
            champion.tags[TAG_TRAINED_THROUGH],
        )
        mlflow.set_tag(TAG_CHAMPION_SAW_TEST_DAYS, "true")
    return decide_promotion(challenger_rmse, str(champion.version), champion_rmse)


def _registered_version(
    client: MlflowClient, model_name: str, model_uri: str, run_id: str
) -> tuple[ModelVersion, bool]:
    """The version registered from this run, registering it first if there is none."""
    existing = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    if existing:
        return min(existing, key=lambda found: int(found.version)), False
    logged = mlflow.search_logged_models(
        filter_string=f"source_run_id = '{run_id}' AND name = '{RUNS_URI.match(model_uri)['path']}'",
        output_format="list",
    )
    try:
        version = mlflow.register_model(logged[0].model_uri if logged else model_uri, model_name)
        client.update_registered_model(model_name, model_description(model_name))
        return version, True
    except MlflowException as error:
        if is_refusal(error):
            raise
        raise PipelineError(f"cannot register model_uri '{model_uri}': {error.message}") from error


def _alias_version(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as error:
        if error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST) or "not found" in error.message:
            return None
        raise


def _champion_score(
    client: MlflowClient, model_name: str, champion: ModelVersion, days: HoldoutDays
) -> float | None:
    """The champion's RMSE on these test days, or None when its window needs more history than there is."""
    try:
        champion_rmse, source = model_score(
            f"models:/{model_name}/{champion.version}", client.get_run(champion.run_id), days
        )
        mlflow.set_tag(TAG_CHAMPION_SCORE_SOURCE, source)
        return champion_rmse
    except DataValidationError as error:
        logger.warning("Champion version %s cannot be scored: %s", champion.version, error)
        return None


def _day(value: pd.Timestamp) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-%d")


@click.command(
    help="Register a trained model as a new version of MODEL_NAME with the alias 'challenger', tagged "
    "with its metrics and data lineage. It becomes 'champion' when it is the first version, or when its "
    "RMSE on its test days beats the current champion's RMSE on the same days."
)
@options(REGISTER_STEP)
def cli(model_uri: str, stock_data: str, test_fraction: float, model_name: str) -> None:
    run_step(
        REGISTER_STEP,
        {
            "model_uri": model_uri,
            "stock_data": stock_data,
            "test_fraction": test_fraction,
            "model_name": model_name,
        },
        lambda: register(model_uri, local_input(stock_data), test_fraction, model_name),
        output=registered_version_uri,
    )


def registered_version_uri() -> str:
    """`models:/<name>/<version>` of the version the active register run registered or found."""
    tags = mlflow.get_run(mlflow.active_run().info.run_id).data.tags
    return f"models:/{tags[TAG_REGISTERED_MODEL]}/{tags[TAG_MODEL_VERSION]}"


if __name__ == "__main__":
    cli()
