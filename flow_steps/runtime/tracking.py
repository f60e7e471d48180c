"""The tracking server as a team uses it: fail fast, in one line, when it is down, refuses a login or
presents a certificate this machine does not trust.

Before anything starts, a step says in a few seconds which variable to fix; once runs exist, MLflow's
client rides out an outage (runtime/outages.py).
"""

from __future__ import annotations

import os
import re
import ssl
import time
from collections.abc import Callable, Iterator

import mlflow
import requests
from mlflow.exceptions import MlflowException

from flow_steps.config.errors import PipelineError
from flow_steps.config.names import DEFAULT_EXPERIMENT
from flow_steps.runtime.outages import outage_seconds, retries_for, retry_schedule, retry_settings

TRACKING_URI_VARIABLE = "MLFLOW_TRACKING_URI"
USERNAME_VARIABLE = "MLFLOW_TRACKING_USERNAME"
PASSWORD_VARIABLE = "MLFLOW_TRACKING_PASSWORD"
RUN_ID_VARIABLE = "MLFLOW_RUN_ID"  # set when the run this process continues exists already
CERT_VARIABLE = "MLFLOW_TRACKING_SERVER_CERT_PATH"  # a private CA's or a self-signed certificate
INSECURE_VARIABLE = "MLFLOW_TRACKING_INSECURE_TLS"
CHECK_TIMEOUT_SECONDS = 10
GENERATED_RUN_NAME = re.compile(r"^[a-z]+-[a-z]+-\d+$")  # the names MLflow makes up: adjective-noun-number
CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    # A Databricks-only feature whose check imports IPython (0.5 s) in every run-starting process.
    "MLFLOW_ENABLE_SGC_RUN_RESUMPTION_FOR_DATABRICKS_JOBS": "false",
    # Asynchronous metrics (the per-epoch losses) go in one request per 5 s, not one per call; and a run's
    # end no longer waits out the logging thread's 1 s poll (about 0.9 s a train_model run, measured).
    "MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS": "5",
}


def client_defaults() -> None:
    """MLflow client settings for the pipeline's processes, unless the environment sets its own: the
    retries that ride out an outage of TRACKING_OUTAGE_SECONDS, the timeout, batched asynchronous
    metrics, no Databricks checks."""
    for name, value in {**CLIENT_DEFAULTS, **retry_settings(outage_seconds())}.items():
        os.environ.setdefault(name, value)


def tls_verification() -> bool | str:
    """What `requests` verifies the server's certificate against, as MLflow's client does: the file in
    MLFLOW_TRACKING_SERVER_CERT_PATH, nothing with MLFLOW_TRACKING_INSECURE_TLS=true, else the system's."""
    if os.environ.get(INSECURE_VARIABLE, "").lower() == "true":
        return False
    if path := os.environ.get(CERT_VARIABLE):
        if not os.path.isfile(path):
            raise PipelineError(f"{CERT_VARIABLE}={path} is not a file")
        return path
    return True


class Unreachable(PipelineError):
    """The tracking server did not answer (the connection failed or timed out)."""


def check_tracking_server(timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
    """For an http(s) tracking URI, refuse in one line a server that does not answer or a refused login.

    A process whose run already exists (a step the driver launched, `mlflow run`'s MLFLOW_RUN_ID) rides
    out an outage first, as its MLflow calls would (TRACKING_OUTAGE_SECONDS); any other fails fast.
    """
    uri = mlflow.get_tracking_uri()
    if not uri.startswith(("http://", "https://")):
        return
    patient = bool(os.environ.get(RUN_ID_VARIABLE))
    sleeps = retry_schedule(retries_for(outage_seconds()))[1:] if patient else []
    while True:
        try:
            answer = _ask(uri, timeout)
        except Unreachable:
            if not sleeps:
                raise
            time.sleep(sleeps.pop(0))
            continue
        if answer.status_code >= 500 and sleeps:
            time.sleep(sleeps.pop(0))
            continue
        break
    username, password = os.environ.get(USERNAME_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
    if answer.status_code == 401:
        given = "were refused" if username and password else "are not set"
        raise PipelineError(
            f"the tracking server at {uri} refused the login (401): {USERNAME_VARIABLE} and "
            f"{PASSWORD_VARIABLE} {given}"
        )
    if answer.status_code >= 500:
        raise PipelineError(unhealthy(uri, answer))


def unhealthy(uri: str, answer: requests.Response) -> str:
    """One line for a server error: the cause when the server says its database refused it (a login or a
    database PostgreSQL refused), which only the server's admin can fix."""
    line = f"the tracking server at {uri} answered {answer.status_code}"
    try:
        message = str(answer.json().get("message", ""))
    except (ValueError, AttributeError):
        message = ""
    if "OperationalError" not in message or "failed: " not in message:
        return f"{line}: it is not healthy"
    reason = " ".join(message.split("(Background on this error")[0].rsplit("failed: ", 1)[-1].split())
    fix = "its PGPASSWORD (or ~/.pgpass)" if "password" in reason else "its --database-uri"
    return f"{line}: its database refused it ({reason}): the server's admin fixes {fix} (docs/team-server.md)"


def _ask(uri: str, timeout: float) -> requests.Response:
    """The server's answer to a one-experiment search with this process's login; `Unreachable` when
    it does not answer, another one-line PipelineError when TLS refuses it."""
    base = uri.rstrip("/")
    verify = tls_verification() if uri.startswith("https://") else True
    username, password = os.environ.get(USERNAME_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
    try:
        requests.get(f"{base}/health", timeout=timeout, verify=verify)
        return requests.get(
            f"{base}/api/2.0/mlflow/experiments/search",
            params={"max_results": 1},
            auth=(username, password) if username and password else None,
            timeout=timeout,
            verify=verify,
        )
    except requests.exceptions.SSLError as error:
        raise PipelineError(tls_problem(uri, error)) from error
    except requests.Timeout as error:
        raise Unreachable(f"{TRACKING_URI_VARIABLE}={uri} did not answer within {timeout:g} s") from error
    except requests.ConnectionError as error:
        raise Unreachable(f"{TRACKING_URI_VARIABLE}={uri}: {_connection_problem(error)}") from error


def error_chain(error: BaseException) -> list[BaseException]:
    """`error` and every exception it wraps, outermost first: `__cause__`, `__context__`, urllib3's
    `reason` and exceptions passed as arguments (requests wraps urllib3's that way)."""
    found: list[BaseException] = []
    waiting = [error]
    while waiting:
        current = waiting.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        inner = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        waiting += [item for item in inner if isinstance(item, BaseException)]
    return found


def tls_problem(uri: str, error: requests.exceptions.SSLError) -> str:
    """One line for a refused TLS handshake, with the reason OpenSSL gave (`self-signed certificate`,
    `Hostname mismatch, ...`, `certificate has expired`) and the setting that fixes it."""
    chain = error_chain(error)
    verification = next((e for e in chain if isinstance(e, ssl.SSLCertVerificationError)), None)
    if verification is None and "certificate verify failed" not in str(error).lower():
        return f"{TRACKING_URI_VARIABLE}={uri}: the TLS handshake failed (is it an https server?)"
    reason = getattr(verification, "verify_message", "") or "certificate verify failed"
    if "hostname mismatch" in reason.lower() or "ip address mismatch" in reason.lower():
        return (
            f"the tracking server at {uri} presented a certificate for another host ({reason.rstrip('.')}): "
            f"put a host name the certificate names in {TRACKING_URI_VARIABLE}"
        )
    if "expired" in reason.lower() or "not yet valid" in reason.lower():
        return (
            f"the tracking server at {uri} presented a certificate that is not valid now ({reason}): renew it"
        )
    trusted = f"the certificate in {CERT_VARIABLE}" if os.environ.get(CERT_VARIABLE) else "this machine"
    return (
        f"the tracking server at {uri} presented a certificate that {trusted} does not trust ({reason}): "
        f"set {CERT_VARIABLE} to the server's certificate or its CA's (see docs/team-server.md)"
    )


def _connection_problem(error: requests.ConnectionError) -> str:
    text = str(error)
    if "RemoteDisconnected" in text or "Connection aborted" in text or "BadStatusLine" in text:
        return "the server closed the connection without an answer (does it speak https only?)"
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
    if run_id := os.environ.get(RUN_ID_VARIABLE):
        current = mlflow.MlflowClient().get_run(run_id).info.run_name
        if current and not GENERATED_RUN_NAME.match(current):
            return None
    return default


def use_experiment(experiment_name: str | None) -> None:
    """Log to `experiment_name`, else to MLFLOW_EXPERIMENT_NAME / _ID, else to DEFAULT_EXPERIMENT.

    Under `mlflow run` the run already exists, in the experiment `mlflow run --experiment-name` chose.
    """
    if os.environ.get(RUN_ID_VARIABLE):
        return
    if experiment_name or not (
        os.environ.get("MLFLOW_EXPERIMENT_NAME") or os.environ.get("MLFLOW_EXPERIMENT_ID")
    ):
        mlflow.set_experiment(experiment_name or DEFAULT_EXPERIMENT)


def pages(fetch: Callable[[str | None], list]) -> Iterator:
    """Every item of a paged MLflow search, a page read only when the one before is used up:
    `fetch(page_token)` returns a PagedList (its `token` None on the last page)."""
    token = None
    while True:
        page = fetch(token)
        yield from page
        token = page.token
        if not token:
            return
