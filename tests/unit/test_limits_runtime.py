"""Every limit of the outage setting and of MLflow's retries made from it, on it and on each side; the
sleeps are urllib3's rule, added by hand: 0, then factor * 2**(n - 1) s before retry n >= 2, at most 120 s."""

from __future__ import annotations

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException

from flow_steps.config.errors import PipelineError
from flow_steps.runtime.outages import (
    OUTAGE_VARIABLE,
    is_outage,
    outage_error,
    outage_seconds,
    retries_for,
    retry_schedule,
    retry_settings,
    retrying_seconds,
)

# 0 + 2 + 4 + 8 + 16 + 32 + 64 + 120 + 120 + 120: ten retries, the most MLflow allows.
LONGEST = 486


def test_the_sleeps_double_up_to_two_minutes():
    assert retry_schedule(1) == [0.0]
    assert retry_schedule(10) == [0, 2, 4, 8, 16, 32, 64, 120, 120, 120]  # 2**7 = 128 is capped
    assert retry_schedule(3, factor=3) == [0, 6, 12]


# 3 retries sleep 0 + 2 + 4 = 6 s, 4 retries 14 s: 6 s needs 3, 6.01 s needs 4.
@pytest.mark.parametrize(
    ("seconds", "retries"), [(0.5, 2), (2, 2), (2.01, 3), (6, 3), (6.01, 4), (LONGEST, 10)]
)
def test_the_fewest_retries_that_sleep_at_least_the_setting(seconds, retries):
    assert retries_for(seconds) == retries
    assert retry_settings(seconds) == {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "1",
    }


# The setting: above 0, at most 486 s.
@pytest.mark.parametrize(
    ("value", "seconds"), [("0.001", 0.001), (" 45 ", 45.0), ("486", 486.0), ("", 120.0), ("  ", 120.0)]
)
def test_the_setting_is_above_zero_and_at_most_486_seconds(monkeypatch, value, seconds):
    monkeypatch.setenv(OUTAGE_VARIABLE, value)
    assert outage_seconds() == seconds


@pytest.mark.parametrize("value", ["0", "-0.001", "486.001", "487", "inf", "nan", "two"])
def test_the_setting_refuses_zero_and_beyond_486_seconds(monkeypatch, value):
    monkeypatch.setenv(OUTAGE_VARIABLE, value)
    message = f"^{OUTAGE_VARIABLE}='{value}' must be a number of seconds above 0 and at most 486 "
    with pytest.raises(PipelineError, match=message + r"\(MLflow retries a call at most 10 times\)$"):
        outage_seconds()


def test_the_retrying_time_follows_this_process_settings(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "3")
    assert retrying_seconds() == 0 + 6 + 12 + 24
    # One of them unset: MLflow's own reading of both, its default factor 2 with the 4 retries set:
    # 0 + 4 + 8 + 16.
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")
    assert retrying_seconds() == 28
    # Its default 7 retries with the factor 1 set: 0 + 2 + 4 + 8 + 16 + 32 + 64.
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    assert retrying_seconds() == 126
    # Both defaults, factor 2: 0 + 4 + 8 + 16 + 32 + 64 + 120 (2 * 2**6 = 128, capped).
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")
    assert retrying_seconds() == 244


def chained(error: BaseException, cause: BaseException, how: str) -> BaseException:
    setattr(error, how, cause)
    return error


def test_an_outage_is_found_however_deep_mlflow_wraps_it():
    refused = requests.ConnectionError("refused")
    assert is_outage(refused)
    assert is_outage(chained(MlflowException("API request failed"), refused, "__cause__"))
    assert is_outage(
        chained(MlflowException("x"), chained(ValueError("y"), refused, "__context__"), "__cause__")
    )
    assert is_outage(MlflowException("API request to x failed: Max retries exceeded with url"))
    assert not is_outage(MlflowException("RESOURCE_DOES_NOT_EXIST"))
    assert not is_outage(ValueError("Max retries exceeded"))  # the text counts from MLflow only


@pytest.mark.parametrize(
    ("seen", "what"),
    [
        ("Failed: [Errno 111] Connection refused", "connection refused"),
        ("NewConnectionError(Errno 111)", "connection refused"),
        ("too many 503 error responses", "it kept answering with server errors (5xx): is its database up?"),
        ("too many redirects", "no answer"),
        ("read timed out", "no answer"),
    ],
)
def test_the_outage_line_names_the_uri_the_time_and_what_was_seen(monkeypatch, seen, what):
    monkeypatch.setenv(OUTAGE_VARIABLE, "30")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    mlflow.set_tracking_uri("http://127.0.0.1:9")
    try:
        message = str(outage_error(MlflowException(seen)))
    finally:
        mlflow.set_tracking_uri(None)
    # 5 retries, factor 1: 0 + 2 + 4 + 8 + 16 = 30 s.
    assert message == (
        "the tracking server at MLFLOW_TRACKING_URI=http://127.0.0.1:9 did not answer through 30 s of "
        f"retries (TRACKING_OUTAGE_SECONDS=30): {what}"
    )
