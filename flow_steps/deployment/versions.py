"""The Model Registry's questions, asked one way: which version an alias names, which versions a run
has, registering a run's model, and the registered model's description."""

from __future__ import annotations

import logging
import re

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode
from mlflow.tracking import MlflowClient

from flow_steps.config.errors import PipelineError
from flow_steps.config.names import (
    MAX_HORIZON,
)
from flow_steps.config.values import DEFAULT_TRAIN_PARAMS
from flow_steps.runtime.tracking import is_refusal

logger = logging.getLogger(__name__)

RUNS_URI = re.compile(r"^runs:/(?P<run_id>[0-9a-f]{32})/(?P<path>.+)$")
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def register_version(
    client: MlflowClient, model_name: str, model_uri: str, run_id: str, tags: dict[str, str]
) -> tuple[ModelVersion, bool]:
    """The version registered from this run, registering it first (with `tags`, in the same request)
    if there is none."""
    existing = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    if existing:
        return min(existing, key=lambda found: int(found.version)), False
    logged = mlflow.search_logged_models(
        filter_string=f"source_run_id = '{run_id}' AND name = '{RUNS_URI.match(model_uri)['path']}'",
        output_format="list",
    )
    try:
        version = mlflow.register_model(logged[0].model_uri if logged else model_uri, model_name, tags=tags)
        client.update_registered_model(model_name, model_description(model_name))
        return version, True
    except MlflowException as error:
        if is_refusal(error):
            raise
        raise PipelineError(f"cannot register model_uri '{model_uri}': {error.message}") from error


def alias_version(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version `alias` names, or None when the model or the alias does not exist."""
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as error:
        if error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST) or "not found" in error.message:
            return None
        raise


def alias_version_number(client: MlflowClient, model_name: str, alias: str) -> str:
    """The number of the version `alias` names, as text; "" when there is none."""
    version = alias_version(client, model_name, alias)
    return str(version.version) if version else ""


def versions_of_run(client: MlflowClient, model_name: str, run_id: str) -> list[ModelVersion]:
    """The versions of `model_name` registered from run `run_id`, oldest first."""
    found = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    return sorted(found, key=lambda version: int(version.version))


def model_description(model_name: str) -> str:
    """What the registered model is, for its registry page."""
    return (
        f"{model_name}: forecasts the next trading days' closing prices of one stock with a two-layer LSTM. "
        "Input: a DataFrame with a 'Close' column of chronological closes (at least the model's window, "
        f"{DEFAULT_TRAIN_PARAMS.window} by default), in any price units; optional request param 'horizon' "
        f"(1-{MAX_HORIZON} trading days). Output: "
        "one row per day ahead, 'days_ahead' and 'forecast_close'. Every version is scored on its test days "
        "next to the naive forecast (tomorrow = today); the alias 'challenger' marks the newest version, "
        "and 'champion' moves to a new version only when, on its test days, it beats the current champion "
        "by evidence: a one-sided Diebold-Mariano test finds its squared errors lower (p at most "
        "promotion_alpha), its RMSE is lower by at least min_improvement, and its 80% interval score is "
        "not significantly worse. Made by the stock-market-prediction pipeline."
    )
