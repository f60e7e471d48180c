"""Before a universe starts anything: tickers a source can serve, a cluster that answers, a store that
its workers reach."""

from __future__ import annotations

import os
import socket

from flow_steps.config.errors import PipelineError, one_line
from flow_steps.config.secrets import mask_secrets
from flow_steps.data.sources import refuse_embedded_secrets, source_for
from flow_steps.runtime.store import sqlite_path
from flow_steps.runtime.tracking import (
    TRACKING_URI_VARIABLE,
)


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


def check_reachable_store(address: str | None, tracking_uri: str) -> None:
    """A cluster's workers cannot write to this machine's SQLite file or ./mlruns: refuse that pairing."""
    if not is_remote(address):
        return
    if sqlite_path(tracking_uri) is not None or tracking_uri.startswith("file:") or "://" not in tracking_uri:
        raise PipelineError(
            f"{TRACKING_URI_VARIABLE}={tracking_uri} is a local store that the workers of the Ray cluster "
            f"at {address} cannot reach: point it at the team tracking server (http://...)"
        )
