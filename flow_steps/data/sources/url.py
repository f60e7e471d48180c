"""An http:// or https:// URL of a CSV file (it may name a key as `${QUANDL_API_KEY}`, never the key)."""

from __future__ import annotations

import logging
import os

import requests

from flow_steps.config.errors import SourceError
from flow_steps.config.secrets import API_KEY_VARIABLES, SECRET_QUERY, is_placeholder, mask_secrets
from flow_steps.data.sources.base import PriceSource, RawPrices, SourceOptions, check_template
from flow_steps.data.sources.http import http_failure, network_failure, retrying_session, timeout_seconds

logger = logging.getLogger(__name__)


def is_url(data_source: str) -> bool:
    """True for http:// and https:// sources."""
    return data_source.lower().startswith(("http://", "https://"))


class UrlSource(PriceSource):
    """A CSV over HTTP: fetched again every time (what it serves may have changed)."""

    described = "a URL"
    variables = API_KEY_VARIABLES  # the keys a URL may name as ${VARIABLE}

    def claims(self, data_source: str) -> bool:
        return is_url(data_source)

    def check(self, data_source: str) -> None:
        refuse_embedded_secrets(data_source)

    def check_tickers(self, data_source: str, tickers: list[str]) -> None:
        check_template(self, data_source, tickers)

    def fetch(self, data_source: str, ticker: str, options: SourceOptions) -> RawPrices:
        shown = mask_secrets(data_source)
        logger.info("Downloading prices from %s", shown)
        try:
            response = retrying_session().get(
                expand_key(data_source), timeout=timeout_seconds(), headers={"Accept": "text/csv, */*"}
            )
        except requests.RequestException as error:
            raise SourceError(network_failure(shown, error)) from error
        if response.status_code != 200:
            raise SourceError(http_failure(shown, response.status_code, what=f"the file {shown}"))
        return RawPrices(response.content, shown)


def refuse_embedded_secrets(data_source: str) -> None:
    """Refuse a URL that carries a literal key: MLflow would log it as a parameter."""
    if is_url(data_source) and any(not is_placeholder(m) for m in SECRET_QUERY.finditer(data_source)):
        raise SourceError(
            f"data_source '{mask_secrets(data_source)}' contains a key: parameters are logged, so write "
            "${QUANDL_API_KEY} in the URL and set the key in that environment variable"
        )


def expand_key(url: str) -> str:
    """The URL with each `${VARIABLE}` of an API key replaced by the key (never logged)."""
    for name in API_KEY_VARIABLES:
        placeholder = "${" + name + "}"
        if placeholder in url:
            if not os.environ.get(name, "").strip():
                raise SourceError(f"the URL names ${{{name}}}, but {name} is not set")
            url = url.replace(placeholder, os.environ[name].strip())
    return url
