"""`quandl`: the Quandl / Nasdaq Data Link API through the `quandl` package, dataset
`<quandl_database>/<TICKER>`, key from QUANDL_API_KEY or NASDAQ_DATA_LINK_API_KEY (base URL from
QUANDL_API_BASE). Its free WIKI feed ended in 2018; EOD is a subscription."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from requests.adapters import HTTPAdapter

from flow_steps.config.errors import SourceError
from flow_steps.config.names import QUANDL_SOURCE
from flow_steps.config.secrets import API_KEY_VARIABLES, mask_secrets
from flow_steps.data.sources.base import PriceSource, RawPrices, SourceOptions
from flow_steps.data.sources.http import (
    BACKOFF_FACTOR,
    MAX_BACKOFF_SECONDS,
    MAX_RETRIES,
    RETRY_STATUSES,
    http_failure,
    network_failure,
    timeout_seconds,
)

logger = logging.getLogger(__name__)

API_BASE_VARIABLE = "QUANDL_API_BASE"
DATABASE_CODE = re.compile(r"[A-Za-z0-9_]{1,40}")


class QuandlSource(PriceSource):
    """Quandl's API: fetched again every time (a dataset gains rows)."""

    described = f"'{QUANDL_SOURCE}'"
    variables = (*API_KEY_VARIABLES, API_BASE_VARIABLE)

    def claims(self, data_source: str) -> bool:
        return data_source == QUANDL_SOURCE

    def fetch(self, data_source: str, ticker: str, options: SourceOptions) -> RawPrices:
        import quandl  # the only source that needs it
        from quandl.errors.quandl_error import QuandlError

        database = options.quandl_database
        if not DATABASE_CODE.fullmatch(database.strip()):
            raise SourceError(
                f"quandl_database '{database}' is not a Quandl database code such as WIKI or EOD"
            )
        dataset = f"{database.strip().upper()}/{ticker}"
        base = os.environ.get(API_BASE_VARIABLE, "").strip().rstrip("/") or quandl.ApiConfig.api_base
        key = api_key()
        quandl.ApiConfig.api_key = key
        quandl.ApiConfig.api_base = base
        quandl.ApiConfig.use_retries = True
        quandl.ApiConfig.number_of_retries = MAX_RETRIES
        quandl.ApiConfig.retry_backoff_factor = BACKOFF_FACTOR
        quandl.ApiConfig.max_wait_between_retries = MAX_BACKOFF_SECONDS
        quandl.ApiConfig.retry_status_codes = list(RETRY_STATUSES)
        logger.info(
            "Fetching Quandl dataset %s from %s (%s)",
            dataset,
            base,
            "with an API key" if key else "no API key",
        )
        try:
            with bounded_quandl_requests(timeout_seconds()):
                frame = quandl.get(dataset)
        except QuandlError as error:
            raise SourceError(quandl_failure(dataset, error, key is not None)) from error
        except requests.RequestException as error:
            raise SourceError(network_failure(f"Quandl at {base}", error)) from error
        if frame.empty:
            raise SourceError(f"Quandl dataset {dataset} has no rows")
        content = frame.reset_index().to_csv(index=False, date_format="%Y-%m-%d").encode()
        return RawPrices(content, f"{QUANDL_SOURCE}:{dataset}@{base}")


def api_key() -> str | None:
    """The API key from the environment (QUANDL_API_KEY, else NASDAQ_DATA_LINK_API_KEY)."""
    for name in API_KEY_VARIABLES:
        if os.environ.get(name, "").strip():
            return os.environ[name].strip()
    return None


def quandl_failure(dataset: str, error: Exception, key_was_set: bool) -> str:
    """One line for Quandl's refusal: the key, an unknown or retired dataset, or its HTTP status."""
    status = getattr(error, "http_status", None)
    if status in (401, 403):
        key_state = "the key was rejected" if key_was_set else "no key is set"
        return (
            f"Quandl refused dataset {dataset} ({status}, {key_state}): set "
            f"{' or '.join(API_KEY_VARIABLES)} to a valid API key"
        )
    if status == 404:
        return f"Quandl has no dataset {dataset} (404): check company_abbreviation and quandl_database"
    if status == 410:
        return (
            f"Quandl dataset {dataset} is retired (410 Gone), as the free WIKI feed was in 2018: use "
            "quandl_database=EOD (a subscription) or a CSV source such as "
            "https://stooq.com/q/d/l/?s=msft.us&i=d"
        )
    if status is not None:
        return http_failure(f"Quandl dataset {dataset}", status, what=f"dataset {dataset}")
    return f"Quandl request for {dataset} failed: {mask_secrets(str(error))}"


class TimeoutAdapter(HTTPAdapter):
    """An HTTP adapter that gives every request a timeout unless it brings its own."""

    def __init__(self, timeout: float, **kwargs):
        self._timeout = timeout
        super().__init__(**kwargs)

    def send(self, request, **kwargs):  # noqa: ANN001, ANN201 (requests' signature)
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


@contextmanager
def bounded_quandl_requests(seconds: float) -> Iterator[None]:
    """The quandl package sets no timeout on its requests: give its sessions an adapter that does.

    Its own retry policy (ApiConfig) is kept; the adapter is mounted for http and https alike.
    """
    from quandl.connection import Connection

    original = Connection.__dict__["get_session"]

    def get_session(cls):  # noqa: ANN001, ANN202
        session = requests.Session()
        adapter = TimeoutAdapter(seconds, max_retries=cls.get_retries())
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    Connection.get_session = classmethod(get_session)
    try:
        yield
    finally:
        Connection.get_session = original
