"""Before a universe starts anything: tickers a source can serve, a cluster that answers, a store that
its workers reach."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from flow_steps.config.errors import PipelineError, one_line
from flow_steps.config.secrets import mask_secrets
from flow_steps.data.sources import refuse_embedded_secrets, source_for
from flow_steps.runtime.store import sqlite_path
from flow_steps.runtime.tracking import (
    TRACKING_URI_VARIABLE,
    error_chain,
)

AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"
TOKEN_VARIABLE = "RAY_AUTH_TOKEN"
TOKEN_PATH_VARIABLE = "RAY_AUTH_TOKEN_PATH"
# Ray 2.60's words: the cluster's answer to a missing or wrong token (its GCS's InvalidAuthToken), and
# the client's own when RAY_AUTH_MODE=token finds no token (ray/_private/authentication).
TOKEN_REFUSED = "authentication token is missing or incorrect"
TOKEN_NOT_FOUND = "no authentication token was found"
TOKEN_FILE_UNREADABLE = "file cannot be opened or is empty"
PROBE_EXIT = 3  # the join probe's exit status when Ray refused the client: its stdout holds Ray's error
PROBE_TIMEOUT_SECONDS = 30
# The probe's Ray client settings: a GCS answers within milliseconds, and something else on the port
# costs 3 s instead of Ray's 40 (a probe that times out lets ray.init decide).
PROBE_SETTINGS = {
    "RAY_py_gcs_connect_timeout_s": "1",
    "RAY_gcs_rpc_server_connect_timeout_s": "1",
    "RAY_gcs_rpc_server_reconnect_timeout_s": "1",
}
# One connection to the cluster's GCS, as `ray.init` makes first, in a child process: Ray's C++ client
# logs a warning on stderr for a refused token (the user's console gets our one line instead), and it
# aborts the process when RAY_AUTH_MODE=token finds no token (the token check before it avoids that).
# Only an authentication error refuses; anything else is left to ray.init.
JOIN_PROBE = f"""
import sys
try:
    from ray._private.authentication.authentication_token_setup import ensure_token_if_auth_enabled
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError
except ImportError:  # another Ray: ray.init itself says what is wrong
    sys.exit(0)
try:
    ensure_token_if_auth_enabled(None, create_token_if_missing=False)
    GcsClient(address=sys.argv[1])
except AuthenticationError as error:
    print(f"{{type(error).__name__}}: {{error}}")
    sys.exit({PROBE_EXIT})
except Exception:
    pass
"""


def check_universe(tickers: list[str], data_source: str, address: str | None = None) -> None:
    """Refuse, before any task starts, a data_source that cannot serve these tickers, or that the
    workers of the remote Ray cluster at `address` cannot reach (a file on this machine)."""
    refuse_embedded_secrets(data_source)
    source = source_for(data_source)
    source.check_tickers(data_source, tickers)
    if is_remote(address) and not source.reachable_from_cluster:
        raise PipelineError(
            f"data_source '{mask_secrets(data_source)}' is {source.described} on this machine, which the "
            f"workers of the Ray cluster at {address} cannot read: use a URL or a source they reach"
        )


def is_remote(address: str | None) -> bool:
    """True for a Ray cluster whose workers may run on other machines (not a local instance)."""
    return address is not None and not (
        address.startswith(("127.0.0.1", "localhost")) or "://127.0.0.1" in address
    )


def cluster_address(ray_address: str) -> str | None:
    """The Ray cluster to use: --ray-address, else $RAY_ADDRESS; None starts a local instance."""
    return ray_address or os.environ.get("RAY_ADDRESS") or None


def probe_target(address: str) -> tuple[str, int] | None:
    """The host and port to probe for a `host:port` cluster address (`[::1]:6379` gives `::1`), or None
    for what is left to Ray (`ray://` client addresses, anything without a port)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return None
    return host.removeprefix("[").removesuffix("]"), int(port)


def check_cluster_answers(address: str, timeout: float = 5) -> None:
    """A `host:port` cluster address must accept a connection: one line now instead of Ray's minutes of
    retries."""
    target = probe_target(address)
    if target is None:
        return
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as error:
        reason = "connection refused" if isinstance(error, ConnectionRefusedError) else one_line(error)
        raise PipelineError(f"no Ray cluster answers at RAY_ADDRESS={address}: {reason}") from error
    check_cluster_joins(address)


def check_cluster_joins(address: str) -> None:
    """The cluster must accept this client (its token, with RAY_AUTH_MODE=token): one line naming the
    variable to set, before any run exists, instead of Ray's 20 s of retries inside the universe run."""
    try:
        probe = subprocess.run(
            [sys.executable, "-c", JOIN_PROBE, address],
            env={**os.environ, **PROBE_SETTINGS},
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return  # a slow cluster: ray.init waits for it
    if probe.returncode == PROBE_EXIT:
        raise PipelineError(join_problem(address, probe.stdout))


def join_problem(address: str, cause: str) -> str:
    """One line for a cluster that refused this client: Ray's cause and the variable that fixes it, the
    token never shown. `cause` is Ray's error (`ray_cause` of an exception, or the probe's output)."""
    lowered = cause.lower()
    head = f"cannot join the Ray cluster at RAY_ADDRESS={address}"
    token_mode = os.environ.get(AUTH_MODE_VARIABLE, "").strip().lower() == "token"
    if TOKEN_NOT_FOUND in lowered:
        line = (
            f"{head}: {AUTH_MODE_VARIABLE}=token but Ray found no token: set {TOKEN_VARIABLE} to the "
            f"cluster's token (or {TOKEN_PATH_VARIABLE} to a file holding it)"
        )
    elif TOKEN_FILE_UNREADABLE in lowered and TOKEN_PATH_VARIABLE in cause:
        line = (
            f"{head}: {TOKEN_PATH_VARIABLE}={os.environ.get(TOKEN_PATH_VARIABLE, '')} cannot be read or is "
            f"empty: point it at the file holding the cluster's token (or set {TOKEN_VARIABLE})"
        )
    elif TOKEN_REFUSED in lowered and token_mode:
        line = (
            f"{head}: the cluster refused this client's token (Ray: {TOKEN_REFUSED}): set "
            f"{TOKEN_VARIABLE} to the cluster's token"
        )
    elif TOKEN_REFUSED in lowered:
        line = (
            f"{head}: the cluster requires a token (Ray: {TOKEN_REFUSED}): set {AUTH_MODE_VARIABLE}=token "
            f"and {TOKEN_VARIABLE} to the cluster's token (see docs/universe.md)"
        )
    else:
        line = f"{head}: {cause}"
    return one_line(PipelineError(line))  # masks the token too (config/secrets.py)


def ray_cause(error: BaseException) -> str:
    """Ray's error as one text, its causes included: the last line of a traceback Ray put in a
    message (`Failed to connect to GCS. Last connection error: Traceback ... AuthenticationError: ...`)."""
    parts = []
    for item in error_chain(error):
        text = str(item).strip()
        if "Traceback (most recent call last)" in text:
            text = text.split("Traceback (most recent call last)")[0].strip() + " " + text.splitlines()[-1]
        if text and text not in parts:
            parts.append(text.strip())
    return ": ".join(parts)


def check_reachable_store(address: str | None, tracking_uri: str) -> None:
    """A cluster's workers cannot write to this machine's SQLite file or ./mlruns: refuse that pairing."""
    if not is_remote(address):
        return
    if sqlite_path(tracking_uri) is not None or tracking_uri.startswith("file:") or "://" not in tracking_uri:
        raise PipelineError(
            f"{TRACKING_URI_VARIABLE}={tracking_uri} is a local store that the workers of the Ray cluster "
            f"at {address} cannot reach: point it at the team tracking server (http://...)"
        )
