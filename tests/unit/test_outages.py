"""Riding out a tracking server outage: the setting, MLflow's retries made from it, telling an outage."""

from __future__ import annotations

import os

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException

from flow_steps.config.errors import PipelineError
from flow_steps.runtime.outages import (
    MAX_OUTAGE_SECONDS,
    MAX_RETRIES,
    OUTAGE_VARIABLE,
    RETRY_VARIABLES,
    is_outage,
    outage_error,
    outage_seconds,
    retry_schedule,
    retry_settings,
    retrying_for,
    retrying_seconds,
)


@pytest.mark.parametrize(("seconds", "retries", "waited"), [(5, 3, 6), (30, 5, 30), (120, 7, 126)])
def test_the_retries_wait_at_least_the_setting_and_not_twice_as_long(seconds, retries, waited):
    settings = retry_settings(seconds)
    assert settings["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == str(retries)
    assert settings["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"  # MLflow takes whole seconds only
    assert sum(retry_schedule(retries)) == waited
    assert seconds <= waited < 2 * seconds + 2


def test_the_longest_setting_uses_every_retry_mlflow_allows_and_sleeps_at_most_two_minutes():
    schedule = retry_schedule(MAX_RETRIES)
    assert schedule[:4] == [0, 2, 4, 8] and max(schedule) == 120
    # 0 + 2 + 4 + ... + 64 + 3 * 120 = 486 s: every retry MLflow allows
    assert MAX_OUTAGE_SECONDS == 486
    assert retry_settings(486)["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == str(MAX_RETRIES) == "10"


def test_the_setting_defaults_to_two_minutes_and_refuses_what_mlflow_cannot_do(monkeypatch):
    monkeypatch.delenv(OUTAGE_VARIABLE, raising=False)
    assert outage_seconds() == 120
    monkeypatch.setenv(OUTAGE_VARIABLE, "45")
    assert outage_seconds() == 45
    for bad in ("0", "-3", "600", "soon", "nan"):
        monkeypatch.setenv(OUTAGE_VARIABLE, bad)
        with pytest.raises(PipelineError, match=f"{OUTAGE_VARIABLE}='{bad}'"):
            outage_seconds()


def test_a_short_retry_is_undone_after_its_block(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "7")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", raising=False)
    with retrying_for(2):
        assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"
        assert retrying_seconds() == 2
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "7"
    assert "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER" not in os.environ
    assert set(retry_settings(3)) == set(RETRY_VARIABLES)


def mlflow_failure(cause: Exception) -> MlflowException:
    """An MlflowException as MLflow's `http_request` raises it: inside `except`, the cause as context."""
    try:
        try:
            raise cause
        except Exception as error:
            raise MlflowException(f"API request to http://x/api failed with exception {error}")  # noqa: B904
    except MlflowException as raised:
        return raised


@pytest.fixture
def server_uri():
    """This process's tracking URI set to a server's (another test may have set one before)."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri("http://127.0.0.1:9")
    yield
    mlflow.set_tracking_uri(previous)


def test_connection_errors_and_exhausted_5xx_retries_are_outages_other_answers_are_not(
    monkeypatch, server_uri
):
    monkeypatch.setenv(OUTAGE_VARIABLE, "120")
    for name, value in retry_settings(120).items():
        monkeypatch.setenv(name, value)
    refused = mlflow_failure(
        requests.ConnectionError("Max retries exceeded ... [Errno 111] Connection refused")
    )
    five_hundreds = mlflow_failure(requests.exceptions.RetryError("too many 503 error responses"))
    assert is_outage(refused) and is_outage(five_hundreds)
    assert not is_outage(MlflowException("Run 'abc' not found", error_code="RESOURCE_DOES_NOT_EXIST"))
    assert not is_outage(MlflowException("Permission denied", error_code="PERMISSION_DENIED"))
    message = str(outage_error(refused))
    assert "MLFLOW_TRACKING_URI=http://127.0.0.1:9" in message
    assert f"126 s of retries ({OUTAGE_VARIABLE}=120)" in message
    assert message.endswith("connection refused")
    assert "database" in str(outage_error(five_hundreds))
