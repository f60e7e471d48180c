"""The tracking server as a team uses it: fail fast, in one line, when it is down or refuses a login.

MLflow's own client retries a dead server for minutes and then raises a traceback; a pipeline step
should say in a few seconds which variable to fix.
"""

from __future__ import annotations

import os
import re

import mlflow
import requests
from mlflow.exceptions import MlflowException

from flow_steps.config.errors import PipelineError

TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"
USERNAME_VARIABLE = "MLFLOW_TRACKING_USERNAME"
PASSWORD_VARIABLE = "MLFLOW_TRACKING_PASSWORD"
CHECK_TIMEOUT_SECONDS = 10
GENERATED_RUN_NAME = re.compile(r"^[a-z]+-[a-z]+-\d+$")  # the names MLflow makes up: adjective-noun-number
CLIENT_DEFAULTS = {
    # MLflow's client defaults retry a dead server for about four minutes; a step gives up sooner.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    # A Databricks-only feature whose check imports IPython (0.5 s) in every run-starting process.
    "MLFLOW_ENABLE_SGC_RUN_RESUMPTION_FOR_DATABRICKS_JOBS": "false",
}


def client_defaults() -> None:
    """MLflow client settings for the pipeline's processes, unless the environment sets its own."""
    for name, value in CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)


def check_tracking_server(timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
    """For an http(s) tracking URI, refuse in one line a server that does not answer or a refused login."""
    uri = mlflow.get_tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return
    base = uri.rstrip("/")
    try:
        requests.get(f"{base}/health", timeout=timeout)
        username, password = os.environ.get(USERNAME_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
        answer = requests.get(
            f"{base}/api/2.0/mlflow/experiments/search",
            params={"max_results": 1},
            auth=(username, password) if username and password else None,
            timeout=timeout,
        )
    except requests.Timeout as error:
        raise PipelineError(f"{TRACKING_URI_VARIABLE}={uri} did not answer within {timeout:g} s") from error
    except requests.ConnectionError as error:
        raise PipelineError(f"{TRACKING_URI_VARIABLE}={uri}: {_connection_problem(error)}") from error
    if answer.status_code == 401:
        given = "were refused" if username and password else "are not set"
        raise PipelineError(
            f"the tracking server at {uri} refused the login (401): {USERNAME_VARIABLE} and "
            f"{PASSWORD_VARIABLE} {given}"
        )
    if answer.status_code >= 500:
        raise PipelineError(f"the tracking server at {uri} answered {answer.status_code}: it is not healthy")


def _connection_problem(error: requests.ConnectionError) -> str:
    text = str(error)
    if "Name or service not known" in text or "nodename nor servname" in text or "Errno -2" in text:
        return "unknown host"
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused (is the tracking server running, on this port?)"
    return f"cannot connect ({type(error).__name__})"


def is_refusal(error: MlflowException) -> bool:
    """True for the server's 401 (login) and 403 (permission) answers."""
    return error.error_code in ("UNAUTHENTICATED", "PERMISSION_DENIED") or error.get_http_status_code() in (
        401,
        403,
    )


def refusal(error: MlflowException, action: str, permission: str) -> PipelineError:
    """One line for a refused request: who, what they tried on which resource, and the permission it needs."""
    if error.error_code == "UNAUTHENTICATED" or error.get_http_status_code() == 401:
        return PipelineError(
            f"the tracking server refused the login (401): check {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}"
        )
    user = os.environ.get(USERNAME_VARIABLE, "(no user)")
    return PipelineError(
        f"the tracking server refused user '{user}' (403): it may not {action}; that needs {permission} "
        "permission, which an admin can grant"
    )


def experiment_label() -> str:
    """The experiment runs go to, as the environment names it (for messages)."""
    if name := os.environ.get("MLFLOW_EXPERIMENT_NAME"):
        return f"experiment '{name}'"
    if experiment_id := os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return f"experiment {experiment_id}"
    return "the experiment"


def run_name_unless_chosen(default: str) -> str | None:
    """`default`, or None to keep the name of the run this process continues (`mlflow run` made it)
    when that name was chosen (`mlflow run --run-name`) rather than made up by MLflow."""
    if run_id := os.environ.get("MLFLOW_RUN_ID"):
        current = mlflow.MlflowClient().get_run(run_id).info.run_name
        if current and not GENERATED_RUN_NAME.match(current):
            return None
    return default
