"""What the sources that answer over HTTP share: the timeout, the retry policy, failures in one line."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from flow_steps.config.errors import SourceError
from flow_steps.config.secrets import mask_secrets

TIMEOUT_VARIABLE = "PRICE_SOURCE_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_RETRIES = 3  # for 429 and 5xx answers, with exponential backoff
BACKOFF_FACTOR = 0.5
MAX_BACKOFF_SECONDS = 8
RETRY_STATUSES = (429, *range(500, 512))


def timeout_seconds() -> float:
    """Seconds to wait for a source to connect or answer (PRICE_SOURCE_TIMEOUT, default 30)."""
    value = os.environ.get(TIMEOUT_VARIABLE, "")
    try:
        return float(value) if value else DEFAULT_TIMEOUT_SECONDS
    except ValueError as error:
        raise SourceError(f"{TIMEOUT_VARIABLE}='{value}' is not a number of seconds") from error


def wait_before_retry(retries_done: int, retry_after: str | None, seconds_left: float) -> float | None:
    """Seconds to wait before the next try after a 429 or 5xx answer, or None: give up.

    The server's Retry-After (seconds) when it sends one, else exponential backoff (BACKOFF_FACTOR * 2**n,
    at most MAX_BACKOFF_SECONDS); None after MAX_RETRIES retries or when the wait would pass the time left
    (PRICE_SOURCE_TIMEOUT bounds the whole fetch, waits included).
    """
    if retries_done >= MAX_RETRIES:
        return None
    wait = min(BACKOFF_FACTOR * 2**retries_done, MAX_BACKOFF_SECONDS)
    if retry_after is not None and retry_after.strip().isdigit():
        wait = float(retry_after.strip())
    return wait if wait <= seconds_left else None


def get_with_retries(
    session: requests.Session,
    url: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> requests.Response:
    """GET `url`, trying again after a 429 or 5xx answer as `wait_before_retry` says: the last answer.

    PRICE_SOURCE_TIMEOUT bounds the whole call, waits and each request's connect and read included (unlike
    urllib3's Retry, which cannot bound a Retry-After by the time left). A request that gets no answer
    raises (requests.RequestException) at once.
    """
    deadline = clock() + timeout_seconds()
    retries_done = 0
    while True:
        left = max(deadline - clock(), 0.001)
        response = session.get(url, params=dict(params), headers=dict(headers), timeout=left)
        if response.status_code not in RETRY_STATUSES:
            return response
        wait = wait_before_retry(retries_done, response.headers.get("Retry-After"), deadline - clock())
        if wait is None:
            return response
        response.close()
        sleep(wait)
        retries_done += 1


def retry_policy() -> Retry:
    """Retry 429 and 5xx answers to GET; a refused connection or a read timeout is reported at once."""
    return Retry(
        total=MAX_RETRIES,
        connect=0,
        read=0,
        status=MAX_RETRIES,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=BACKOFF_FACTOR,
        backoff_max=MAX_BACKOFF_SECONDS,
        raise_on_status=False,
        allowed_methods=frozenset({"GET"}),
    )


def retrying_session() -> requests.Session:
    """A session that retries as `retry_policy` says, over http and https."""
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry_policy()))
    session.mount("https://", HTTPAdapter(max_retries=retry_policy()))
    return session


def http_failure(shown: str, status: int, what: str) -> str:
    """One line for an HTTP answer that is not the prices: what the status means and what to do."""
    if status in (401, 403):
        return f"{shown} refused access ({status}): the server wants credentials or rejected them"
    if status == 404:
        return f"{shown} does not exist (404): check the URL and the ticker"
    if status == 410:
        return f"{shown} is gone (410): the server retired {what}; use another source"
    if status == 429:
        return f"{shown} still answered 429 Too Many Requests after {MAX_RETRIES} retries: wait and run again"
    if status >= 500:
        return f"{shown} still answered server error {status} after {MAX_RETRIES} retries: try again later"
    return f"{shown} answered HTTP {status}"


def network_failure(where: str, error: requests.RequestException) -> str:
    """One line for a request that got no HTTP answer: timeout, refused connection, unknown host."""
    text = str(error)
    if isinstance(error, requests.Timeout) or "timed out" in text.lower():
        return f"{where} did not answer within {timeout_seconds():g} s"
    if "Connection refused" in text or "Errno 111" in text:
        return f"could not connect to {where}: connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text or "Errno -2" in text:
        return f"could not connect to {where}: unknown host"
    return (
        f"request to {where} failed: {mask_secrets(text.splitlines()[0] if text else type(error).__name__)}"
    )
