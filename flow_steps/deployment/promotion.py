"""Promotion: a trained model becomes a new version, `challenger`, and `champion` only when it beats the
current champion on the same test days; its lineage tags and description say how and on what."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mlflow
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from flow_steps.config.errors import DataValidationError, PipelineError
from flow_steps.config.names import (
    ALREADY_REGISTERED,
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    DOWNLOAD_STEP,
    FIRST_VERSION,
    KEPT,
    METRIC_CHALLENGER_TEST_RMSE,
    METRIC_CHAMPION_TEST_RMSE,
    METRIC_NAIVE_TEST_RMSE,
    METRIC_TEST_COVERAGE_80,
    METRIC_TEST_COVERAGE_95,
    PROMOTED,
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
    TAG_TRAIN_RUN_ID,
    TAG_TRAINED_THROUGH,
    TRANSFORM_STEP,
)
from flow_steps.config.values import Registration
from flow_steps.data.reading import sha256_bytes
from flow_steps.deployment.lock import promotion_lock
from flow_steps.deployment.scoring import HoldoutDays, day_text, holdout_days, model_score
from flow_steps.deployment.versions import MODEL_NAME_PATTERN, RUNS_URI, alias_version, register_version
from flow_steps.runtime.inputs import input_file, read_prepared
from flow_steps.runtime.lifecycle import refusals_explained
from flow_steps.training.evaluation import naive_forecast, rmse

logger = logging.getLogger(__name__)


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
        TAG_TRAINED_THROUGH: day_text(days.dates.iloc[-days.n_test - 1]),
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


def register(model_uri: str, stock_data: str, registration: Registration) -> None:
    """Register `model_uri` as a new version of the registered model, tag it, and move the aliases."""
    model_name, test_fraction = registration.model_name, registration.test_fraction
    if not MODEL_NAME_PATTERN.match(model_name):
        raise PipelineError(f"model_name '{model_name}' must be letters, digits, '.', '_' or '-'")
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
    version, is_new = register_version(
        client, model_name, model_uri, run_id, lineage_tags(client, train, days)
    )
    champion = alias_version(client, model_name, CHAMPION_ALIAS)
    challenger_rmse, source = model_score(f"models:/{model_name}/{version.version}", train, days)
    naive_rmse = rmse(days.actual, naive_forecast(days.closes, days.n_test))
    mlflow.log_metrics({METRIC_CHALLENGER_TEST_RMSE: challenger_rmse, METRIC_NAIVE_TEST_RMSE: naive_rmse})
    mlflow.set_tag(TAG_CHALLENGER_SCORE_SOURCE, source)
    if is_new:
        promotion = _compare_with_champion(client, model_name, champion, challenger_rmse, days)
        # The lineage tags came with the version; each call on a version costs two requests (MLflow
        # first checks that the model is not a prompt).
        client.set_model_version_tag(model_name, version.version, TAG_PROMOTION, promotion.decision)
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

    champion_now = alias_version(client, model_name, CHAMPION_ALIAS)
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
    if METRIC_TEST_COVERAGE_80 in metrics and METRIC_TEST_COVERAGE_95 in metrics:
        coverage = (
            f"; 80%/95% intervals covered {metrics[METRIC_TEST_COVERAGE_80]:.1%}"
            f"/{metrics[METRIC_TEST_COVERAGE_95]:.1%}"
        )
    return (
        f"Test RMSE {challenger_rmse:.4g} = {ratio:.3f} x naive over {days.n_test} days "
        f"{day_text(days.dates.iloc[-days.n_test])}..{day_text(days.dates.iloc[-1])}{coverage}; "
        f"trained through {day_text(days.dates.iloc[-days.n_test - 1])}; {promotion.decision}: "
        f"{promotion.reason}"
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
    if champion.tags.get(TAG_TRAINED_THROUGH, "") >= day_text(days.dates.iloc[-days.n_test]):
        logger.warning(
            "Champion version %s was trained on data through %s, on or after the first test day: "
            "its score on these days is optimistic",
            champion.version,
            champion.tags[TAG_TRAINED_THROUGH],
        )
        mlflow.set_tag(TAG_CHAMPION_SAW_TEST_DAYS, "true")
    return decide_promotion(challenger_rmse, str(champion.version), champion_rmse)


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
