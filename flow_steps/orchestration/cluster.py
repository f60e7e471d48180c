"""Before a universe starts anything: tickers a source can serve, a cluster that answers, a store that
its workers reach."""

from __future__ import annotations

import os
import socket

from flow_steps.config.errors import PipelineError
from flow_steps.config.names import (
    QUANDL_SOURCE,
    SAMPLE_SOURCE,
    SAMPLE_TICKER,
)
from flow_steps.data.masking import mask_secrets, one_line
from flow_steps.data.sources import check_data_source, is_url
from flow_steps.data.tickers import TICKER_PLACEHOLDER
from flow_steps.runtime.store import sqlite_path
from flow_steps.runtime.tracking import (
    TRACKING_URI_VARIABLE,
)


def check_universe(tickers: list[str], data_source: str) -> None:
    """Refuse, before any task starts, a data_source that cannot serve these tickers."""
    if data_source == SAMPLE_SOURCE:
        others = [ticker for ticker in tickers if ticker != SAMPLE_TICKER]
        if others:
            raise PipelineError(
                f"data_source '{SAMPLE_SOURCE}' holds {SAMPLE_TICKER} only, not {', '.join(others)}: "
                "give a path or URL with {ticker}, or 'quandl'"
            )
        return
    if data_source == QUANDL_SOURCE:
        return
    if TICKER_PLACEHOLDER not in data_source:
        if len(tickers) > 1:
            raise PipelineError(
                f"data_source '{mask_secrets(data_source)}' has no {TICKER_PLACEHOLDER}: every ticker would "
                "read the same prices"
            )
        check_data_source(data_source)
    elif not is_url(data_source) and "://" in data_source:
        check_data_source(data_source)  # names the unsupported scheme


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
    if address is None or address.startswith(("127.0.0.1", "localhost")) or "://127.0.0.1" in address:
        return
    if sqlite_path(tracking_uri) is not None or tracking_uri.startswith("file:") or "://" not in tracking_uri:
        raise PipelineError(
            f"{TRACKING_URI_VARIABLE}={tracking_uri} is a local store that the workers of the Ray cluster "
            f"at {address} cannot reach: point it at the team tracking server (http://...)"
        )
