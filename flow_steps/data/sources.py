"""Where daily prices come from. Each source returns the file's bytes as it gave them.

Sources (the `data_source` parameter):
- `sample`: the bundled public-domain Microsoft prices, offline;
- `quandl`: the Quandl / Nasdaq Data Link API through the `quandl` package, dataset
  `<quandl_database>/<TICKER>`, key from QUANDL_API_KEY or NASDAQ_DATA_LINK_API_KEY;
- an `http://` or `https://` URL of a CSV file (it may name a key as `${QUANDL_API_KEY}`);
- a local CSV path.

API keys never leave this module: they are masked in every message, and the resolved source recorded
as lineage names the dataset or URL, never the key.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from flow_steps.config.errors import SourceError
from flow_steps.config.names import QUANDL_SOURCE, SAMPLE_SOURCE, SAMPLE_TICKER
from flow_steps.data.masking import API_KEY_VARIABLES, SECRET_QUERY, is_placeholder, mask_secrets

logger = logging.getLogger(__name__)

SAMPLE_FILE = Path(__file__).resolve().parent / "sample_data" / "WIKI-MSFT.csv"
API_BASE_VARIABLE = "QUANDL_API_BASE"
TIMEOUT_VARIABLE = "PRICE_SOURCE_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_RETRIES = 3  # for 429 and 5xx answers, with exponential backoff
BACKOFF_FACTOR = 0.5
RETRY_STATUSES = (429, *range(500, 512))


@dataclass(frozen=True)
class RawPrices:
    """A price file as the source gave it, and where it came from (never with credentials)."""

    content: bytes
    resolved_source: str


def fetch_raw_prices(data_source: str, ticker: str, quandl_database: str = "WIKI") -> RawPrices:
    """Fetch the raw price file for `ticker` from `data_source`."""
    check_data_source(data_source)
    if data_source == SAMPLE_SOURCE:
        return _sample(ticker)
    if data_source == QUANDL_SOURCE:
        return _quandl(ticker, quandl_database)
    if is_url(data_source):
        return _url(data_source)
    return _local_file(Path(data_source).expanduser())


def is_url(data_source: str) -> bool:
    """True for http:// and https:// sources."""
    return data_source.lower().startswith(("http://", "https://"))


def api_key() -> str | None:
    """The API key from the environment (QUANDL_API_KEY, else NASDAQ_DATA_LINK_API_KEY)."""
    for name in API_KEY_VARIABLES:
        if os.environ.get(name, "").strip():
            return os.environ[name].strip()
    return None


def check_data_source(data_source: str) -> None:
    """Refuse, before any work, a data_source that names no known source (and URLs with literal keys)."""
    refuse_embedded_secrets(data_source)
    if data_source in (SAMPLE_SOURCE, QUANDL_SOURCE) or is_url(data_source):
        return
    if "://" in data_source:
        raise SourceError(
            f"data_source '{mask_secrets(data_source)}' has an unsupported scheme: use "
            f"'{SAMPLE_SOURCE}', '{QUANDL_SOURCE}', an http(s):// URL or a path to a CSV file"
        )
    if not Path(data_source).expanduser().is_file():
        raise SourceError(
            f"data_source '{data_source}' is not '{SAMPLE_SOURCE}', '{QUANDL_SOURCE}', "
            "a URL or an existing CSV file"
        )


def refuse_embedded_secrets(data_source: str) -> None:
    """Refuse a URL that carries a literal key: MLflow would log it as a parameter."""
    if is_url(data_source) and any(not is_placeholder(m) for m in SECRET_QUERY.finditer(data_source)):
        raise SourceError(
            f"data_source '{mask_secrets(data_source)}' contains a key: parameters are logged, so write "
            "${QUANDL_API_KEY} in the URL and set the key in that environment variable"
        )


def timeout_seconds() -> float:
    """Seconds to wait for a source to connect or answer (PRICE_SOURCE_TIMEOUT, default 30)."""
    value = os.environ.get(TIMEOUT_VARIABLE, "")
    try:
        return float(value) if value else DEFAULT_TIMEOUT_SECONDS
    except ValueError as error:
        raise SourceError(f"{TIMEOUT_VARIABLE}='{value}' is not a number of seconds") from error


def _sample(ticker: str) -> RawPrices:
    if ticker.upper() != SAMPLE_TICKER:
        raise SourceError(
            f"the bundled sample holds {SAMPLE_TICKER} prices only, not {ticker}: "
            f"use data_source={QUANDL_SOURCE}, a CSV URL or a CSV file for that ticker"
        )
    logger.info("Using the bundled sample %s", SAMPLE_FILE.name)
    return RawPrices(SAMPLE_FILE.read_bytes(), f"{SAMPLE_SOURCE}:{SAMPLE_FILE.name}")


def _local_file(path: Path) -> RawPrices:
    logger.info("Reading prices from %s", path.resolve())
    return RawPrices(path.read_bytes(), path.resolve().as_uri())


def _retry() -> Retry:
    return Retry(
        total=MAX_RETRIES,
        connect=0,  # a refused connection is reported at once
        read=0,
        status=MAX_RETRIES,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=BACKOFF_FACTOR,
        backoff_max=8,
        raise_on_status=False,
        allowed_methods=frozenset({"GET"}),
    )


def _url(url_template: str) -> RawPrices:
    shown = mask_secrets(url_template)
    url = _expand_key(url_template)
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=_retry()))
    session.mount("https://", HTTPAdapter(max_retries=_retry()))
    logger.info("Downloading prices from %s", shown)
    try:
        response = session.get(url, timeout=timeout_seconds(), headers={"Accept": "text/csv, */*"})
    except requests.RequestException as error:
        raise SourceError(_network_failure(shown, error)) from error
    if response.status_code != 200:
        raise SourceError(_http_failure(shown, response.status_code, what=f"the file {shown}"))
    return RawPrices(response.content, shown)


def _quandl(ticker: str, database: str) -> RawPrices:
    import quandl  # the only source that needs it
    from quandl.errors.quandl_error import QuandlError

    if not re.fullmatch(r"[A-Za-z0-9_]{1,40}", database.strip()):
        raise SourceError(f"quandl_database '{database}' is not a Quandl database code such as WIKI or EOD")
    dataset = f"{database.strip().upper()}/{ticker}"
    base = os.environ.get(API_BASE_VARIABLE, "").strip().rstrip("/") or quandl.ApiConfig.api_base
    key = api_key()
    quandl.ApiConfig.api_key = key
    quandl.ApiConfig.api_base = base
    quandl.ApiConfig.use_retries = True
    quandl.ApiConfig.number_of_retries = MAX_RETRIES
    quandl.ApiConfig.retry_backoff_factor = BACKOFF_FACTOR
    quandl.ApiConfig.max_wait_between_retries = 8
    quandl.ApiConfig.retry_status_codes = list(RETRY_STATUSES)
    logger.info(
        "Fetching Quandl dataset %s from %s (%s)", dataset, base, "with an API key" if key else "no API key"
    )
    try:
        with _bounded_quandl_requests(timeout_seconds()):
            frame = quandl.get(dataset)
    except QuandlError as error:
        raise SourceError(_quandl_failure(dataset, error, key is not None)) from error
    except requests.RequestException as error:
        raise SourceError(_network_failure(f"Quandl at {base}", error)) from error
    if frame.empty:
        raise SourceError(f"Quandl dataset {dataset} has no rows")
    content = frame.reset_index().to_csv(index=False, date_format="%Y-%m-%d").encode()
    return RawPrices(content, f"{QUANDL_SOURCE}:{dataset}@{base}")


def _quandl_failure(dataset: str, error: Exception, key_was_set: bool) -> str:
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
        return _http_failure(f"Quandl dataset {dataset}", status, what=f"dataset {dataset}")
    return f"Quandl request for {dataset} failed: {mask_secrets(str(error))}"


def _http_failure(shown: str, status: int, what: str) -> str:
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


def _expand_key(url: str) -> str:
    for name in API_KEY_VARIABLES:
        placeholder = "${" + name + "}"
        if placeholder in url:
            if not os.environ.get(name, "").strip():
                raise SourceError(f"the URL names ${{{name}}}, but {name} is not set")
            url = url.replace(placeholder, os.environ[name].strip())
    return url


def _network_failure(where: str, error: requests.RequestException) -> str:
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


class _TimeoutAdapter(HTTPAdapter):
    """An HTTP adapter that gives every request a timeout unless it brings its own."""

    def __init__(self, timeout: float, **kwargs):
        self._timeout = timeout
        super().__init__(**kwargs)

    def send(self, request, **kwargs):  # noqa: ANN001, ANN201 (requests' signature)
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


@contextmanager
def _bounded_quandl_requests(seconds: float) -> Iterator[None]:
    """The quandl package sets no timeout on its requests: give its sessions an adapter that does.

    Its own retry policy (ApiConfig) is kept; the adapter is mounted for http and https alike.
    """
    from quandl.connection import Connection

    original = Connection.__dict__["get_session"]

    def get_session(cls):  # noqa: ANN001, ANN202
        session = requests.Session()
        adapter = _TimeoutAdapter(seconds, max_retries=cls.get_retries())
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    Connection.get_session = classmethod(get_session)
    try:
        yield
    finally:
        Connection.get_session = original
