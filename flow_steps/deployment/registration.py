"""Registration: a trained model becomes a new version, `challenger`, and `champion` only when the
promotion rule (deployment/promotion.py) says so on the same test days; the register run logs the
evidence, and the version's tags and description say how and on what."""

from __future__ import annotations

import logging

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
    METRIC_CHALLENGER_TEST_RMSE,
    METRIC_CHAMPION_TEST_RMSE,
    METRIC_NAIVE_TEST_RMSE,
    TAG_CHALLENGER_SCORE_SOURCE,
    TAG_CHAMPION_SAW_TEST_DAYS,
    TAG_CHAMPION_SCORE_SOURCE,
    TAG_CHAMPION_VERSION,
    TAG_CHAMPION_VERSION_BEFORE,
    TAG_CHILD_RUN_PREFIX,
    TAG_CODE_VERSION,
    TAG_DATA_SOURCE,
    TAG_MODEL_VERSION,
    TAG_NO_SKILL_OVER_NAIVE,
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
from flow_steps.deployment.promotion import (
    Promotion,
    PromotionRules,
    decide_promotion,
    evidence_metrics,
    train_run_id,
    version_description,
)
from flow_steps.deployment.scoring import (
    DailyLosses,
    HoldoutDays,
    day_text,
    holdout_days,
    model_score,
    naive_losses,
)
from flow_steps.deployment.versions import MODEL_NAME_PATTERN, alias_version, register_version
from flow_steps.runtime.inputs import input_file, read_prepared
from flow_steps.runtime.lifecycle import refusals_explained

logger = logging.getLogger(__name__)


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
    rules = PromotionRules(registration.promotion_alpha, registration.min_improvement)
    client = MlflowClient()
    try:
        train = client.get_run(run_id)
    except MlflowException as error:
        raise PipelineError(f"model_uri '{model_uri}': no such run in this tracking store") from error
    with (
        refusals_explained(f"register versions of registered model '{model_name}'", "EDIT"),
        promotion_lock(client, model_name),  # concurrent registrations decide one at a time
    ):
        _register_and_promote(client, train, model_uri, model_name, days, rules)


def _register_and_promote(
    client: MlflowClient,
    train: Run,
    model_uri: str,
    model_name: str,
    days: HoldoutDays,
    rules: PromotionRules,
) -> None:
    """The registry's part of `register`: a version, its tags and description, the aliases."""
    run_id = train.info.run_id
    version, is_new = register_version(
        client, model_name, model_uri, run_id, lineage_tags(client, train, days)
    )
    champion = alias_version(client, model_name, CHAMPION_ALIAS)
    challenger, source = model_score(f"models:/{model_name}/{version.version}", train, days)
    naive = naive_losses(days)
    mlflow.log_metrics({METRIC_CHALLENGER_TEST_RMSE: challenger.rmse, METRIC_NAIVE_TEST_RMSE: naive.rmse})
    mlflow.set_tag(TAG_CHALLENGER_SCORE_SOURCE, source)
    if is_new:
        promotion = _compare_with_champion(client, model_name, champion, challenger, naive, days, rules)
        mlflow.log_metrics(evidence_metrics(promotion))
        # The lineage tags came with the version; each call on a version costs two requests (MLflow
        # first checks that the model is not a prompt).
        client.set_model_version_tag(model_name, version.version, TAG_PROMOTION, promotion.decision)
        if promotion.no_skill:
            client.set_model_version_tag(model_name, version.version, TAG_NO_SKILL_OVER_NAIVE, "true")
            mlflow.set_tag(TAG_NO_SKILL_OVER_NAIVE, "true")
        client.update_model_version(
            model_name,
            version.version,
            version_description(challenger.rmse, naive.rmse, days, promotion, train.data.metrics),
        )
        client.set_registered_model_alias(model_name, CHALLENGER_ALIAS, version.version)
        if promotion.promotes:
            client.set_registered_model_alias(model_name, CHAMPION_ALIAS, version.version)
    else:
        promotion = Promotion(ALREADY_REGISTERED, f"run {run_id} is already version {version.version}")

    # Under the promotion lock no other registration moves the alias: no need to read it again.
    champion_now = version if is_new and promotion.promotes else champion
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
        challenger.rmse,
        naive.rmse,
        promotion.reason,
        champion_now.version if champion_now else "none",
    )


def _compare_with_champion(
    client: MlflowClient,
    model_name: str,
    champion: ModelVersion | None,
    challenger: DailyLosses,
    naive: DailyLosses,
    days: HoldoutDays,
    rules: PromotionRules,
) -> Promotion:
    """Score the champion on these test days, log its score, and decide; warn if it saw those days."""
    if champion is None:
        return decide_promotion(challenger, None, None, rules, naive)
    champion_losses = _champion_score(client, model_name, champion, days)
    if champion_losses is not None:
        mlflow.log_metric(METRIC_CHAMPION_TEST_RMSE, champion_losses.rmse)
    if champion.tags.get(TAG_TRAINED_THROUGH, "") >= day_text(days.dates.iloc[-days.n_test]):
        logger.warning(
            "Champion version %s was trained on data through %s, on or after the first test day: "
            "its score on these days is optimistic",
            champion.version,
            champion.tags[TAG_TRAINED_THROUGH],
        )
        mlflow.set_tag(TAG_CHAMPION_SAW_TEST_DAYS, "true")
    return decide_promotion(challenger, str(champion.version), champion_losses, rules, naive)


def _champion_score(
    client: MlflowClient, model_name: str, champion: ModelVersion, days: HoldoutDays
) -> DailyLosses | None:
    """The champion's daily losses on these test days, or None when its window needs more history than
    there is."""
    try:
        losses, source = model_score(
            f"models:/{model_name}/{champion.version}", client.get_run(champion.run_id), days
        )
        mlflow.set_tag(TAG_CHAMPION_SCORE_SOURCE, source)
        return losses
    except DataValidationError as error:
        logger.warning("Champion version %s cannot be scored: %s", champion.version, error)
        return None
