"""Riding out an outage of the tracking server or of its database, once runs exist.

The start-up check (`tracking.check_tracking_server`) fails in seconds. After it, MLflow's own client
retries every call that meets a connection error or a 5xx answer (and 408/429, the "try again later"
answers), never another 4xx, sleeping 2, 4, 8, ... s between tries, for at least TRACKING_OUTAGE_SECONDS
in all (default 120: seven retries, 126 s). This module turns that one setting into MLflow's retry
variables; a call that still fails becomes one line naming MLFLOW_TRACKING_URI, and runs are then closed
with a short retry only: what cannot be reached is closed by the next pipeline's sweep of runs whose
process is gone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import mlflow
import requests
import urllib3
from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, MLFLOW_HTTP_REQUEST_MAX_RETRIES
from mlflow.exceptions import MlflowException

from flow_steps.config.errors import PipelineError

logger = logging.getLogger(__name__)

OUTAGE_VARIABLE = "TRACKING_OUTAGE_SECONDS"
DEFAULT_OUTAGE_SECONDS = 120.0
# MLflow allows at most ten retries of a call and a whole-second backoff factor; urllib3 sleeps
# factor * 2**(n - 1) s before retry n >= 2, at most 120 s. With factor 1: 2, 4, 8, ... s apart.
MAX_RETRIES = 10
LONGEST_SLEEP = 120.0
# Random jitter spreads the retries of many processes (a universe's tickers) over time.
JITTER_SECONDS = 1.0
CLOSING_SECONDS = 2.0  # after a failure, closing a run is tried this long; the next pipeline does the rest
RETRY_VARIABLES = (
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER",
)


def retry_schedule(retries: int, factor: int = 1) -> list[float]:
    """The sleeps before each of `retries` retries (jitter aside): 0, 2, 4, 8, ... s, at most 120 s."""
    return [0.0] + [min(LONGEST_SLEEP, factor * 2.0 ** (attempt - 1)) for attempt in range(2, retries + 1)]


def retrying_seconds() -> float:
    """How long a failing call is retried with this process's MLflow settings (jitter aside)."""
    retries, factor = (os.environ.get(name, "") for name in RETRY_VARIABLES[:2])
    if not (retries.isdigit() and factor.isdigit()):
        return sum(
            retry_schedule(MLFLOW_HTTP_REQUEST_MAX_RETRIES.get(), MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get())
        )
    return sum(retry_schedule(int(retries), int(factor)))


MAX_OUTAGE_SECONDS = sum(retry_schedule(MAX_RETRIES))  # 486 s


def outage_seconds() -> float:
    """TRACKING_OUTAGE_SECONDS from the environment (default 120), refused in one line when invalid."""
    value = os.environ.get(OUTAGE_VARIABLE, "").strip()
    if not value:
        return DEFAULT_OUTAGE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= MAX_OUTAGE_SECONDS:
        raise PipelineError(
            f"{OUTAGE_VARIABLE}='{value}' must be a number of seconds above 0 and at most "
            f"{MAX_OUTAGE_SECONDS:g} (MLflow retries a call at most {MAX_RETRIES} times)"
        )
    return seconds


def retries_for(seconds: float) -> int:
    """The fewest retries whose sleeps add up to at least `seconds` (120 s: 7 retries, 126 s)."""
    return next(
        n for n in range(1, MAX_RETRIES + 1) if sum(retry_schedule(n)) >= min(seconds, MAX_OUTAGE_SECONDS)
    )


def retry_settings(seconds: float) -> dict[str, str]:
    """MLflow's client retry variables that keep a failing call retrying for at least `seconds`."""
    return dict(zip(RETRY_VARIABLES, (str(retries_for(seconds)), "1", f"{JITTER_SECONDS:g}"), strict=True))


@contextmanager
def retrying_for(seconds: float) -> Iterator[None]:
    """MLflow calls inside the block retry for about `seconds` (this process's setting restored after)."""
    previous = {name: os.environ.get(name) for name in RETRY_VARIABLES}
    os.environ.update(retry_settings(seconds))
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


OUTAGE_ERRORS = (requests.ConnectionError, requests.exceptions.RetryError, urllib3.exceptions.MaxRetryError)


def is_outage(error: BaseException) -> bool:
    """Whether an MLflow call failed because the server did not answer, or answered 5xx, to the end of
    its retries (MLflow raises its own exception, the requests error as its context)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OUTAGE_ERRORS):
            return True
        seen = seen.__cause__ or seen.__context__
    return isinstance(error, MlflowException) and "Max retries exceeded" in str(error)


def outage_error(error: BaseException) -> PipelineError:
    """The one line for an outage that outlasted the retries: the URI, how long, what was seen."""
    seen = " ".join(str(error).split())
    if "Connection refused" in seen or "Errno 111" in seen:
        what = "connection refused"
    elif "too many" in seen and "error responses" in seen:
        what = "it kept answering with server errors (5xx): is its database up?"
    else:
        what = "no answer"
    return PipelineError(
        f"the tracking server at MLFLOW_TRACKING_URI={mlflow.get_tracking_uri()} did not answer through "
        f"{retrying_seconds():g} s of retries ({OUTAGE_VARIABLE}={outage_seconds():g}): {what}"
    )


def tried_briefly(what: str, *actions: Callable[[], object]) -> bool:
    """Do each of `actions` (MLflow calls), retrying for a few seconds only; whether the server took all.

    After a failure the server may be the thing that failed: waiting another outage's length to close
    a run would only delay the one-line error. Every action is tried (an `end_run` after a failed
    `set_tag` still ends the run in this process); a run left RUNNING is closed by the next pipeline.
    """
    took = True
    with retrying_for(CLOSING_SECONDS):
        for action in actions:
            try:
                action()
            except MlflowException as error:
                if not is_outage(error):
                    raise
                took = False
    if not took:
        logger.warning("Could not %s: the tracking server did not answer; the next pipeline will", what)
    return took
