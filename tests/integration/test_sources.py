"""The real `quandl` package and HTTP client against a loopback server standing in for the APIs."""

from __future__ import annotations

import io
import socket

import pandas as pd
import pytest

from flow_steps.config.errors import SourceError
from flow_steps.config.secrets import mask_secrets
from flow_steps.data.sources import check_data_source, fetch_raw_prices
from tests.support.price_server import HANG

KEY = "qk-Recognisable-Secret-0042"


def as_frame(content: bytes) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(content))


def test_quandl_dataset_with_the_key_in_a_header(source_env, price_server):
    source_env.setenv("QUANDL_API_KEY", KEY)
    price_server.required_key = KEY
    raw = fetch_raw_prices("quandl", "MSFT", "EOD")
    frame = as_frame(raw.content)
    assert len(frame) == 1090 and "Adj_Close" in frame.columns
    assert frame["Date"].is_monotonic_increasing  # the client asked for order=asc
    [request] = price_server.requests
    assert request.headers.get("x-api-token") == KEY
    assert raw.resolved_source == f"quandl:EOD/MSFT@{price_server.api_base}"
    assert KEY not in raw.resolved_source


def test_nasdaq_data_link_key_variable_also_works(source_env, price_server):
    source_env.setenv("NASDAQ_DATA_LINK_API_KEY", KEY)
    price_server.required_key = KEY
    assert len(as_frame(fetch_raw_prices("quandl", "MSFT", "EOD").content)) == 1090


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            None,
            r"refused dataset EOD/MSFT \(401, no key is set\): set QUANDL_API_KEY or NASDAQ_DATA_LINK",
        ),
        ("qk-wrong-key-1234", r"\(401, the key was rejected\)"),
    ],
)
def test_missing_or_rejected_key_names_the_variables_and_never_the_key(
    source_env, price_server, key, message
):
    price_server.required_key = KEY
    if key:
        source_env.setenv("QUANDL_API_KEY", key)
    with pytest.raises(SourceError, match=message) as caught:
        fetch_raw_prices("quandl", "MSFT", "EOD")
    assert KEY not in str(caught.value) and (key is None or key not in str(caught.value))


def test_unknown_dataset_is_named(source_env):
    with pytest.raises(SourceError, match=r"no dataset EOD/NOPE \(404\): check company_abbreviation"):
        fetch_raw_prices("quandl", "NOPE", "EOD")


def test_retired_wiki_feed_says_so_and_suggests_alternatives(source_env):
    with pytest.raises(
        SourceError, match=r"WIKI/MSFT is retired \(410 Gone\).*quandl_database=EOD.*CSV source"
    ):
        fetch_raw_prices("quandl", "MSFT", "WIKI")


def test_rate_limit_and_server_errors_are_retried(source_env, price_server):
    path = price_server.dataset_path("EOD/MSFT")
    price_server.scripted[path] = [429, 503]
    assert len(as_frame(fetch_raw_prices("quandl", "MSFT", "EOD").content)) == 1090
    assert price_server.paths_requested(path) == 3


@pytest.mark.parametrize(
    ("status", "message"), [(503, "server error 503 after 3 retries"), (429, "429 Too Many")]
)
def test_persistent_failures_stop_after_a_bounded_number_of_retries(
    source_env, price_server, status, message
):
    path = price_server.dataset_path("EOD/MSFT")
    price_server.scripted[path] = [status] * 10
    with pytest.raises(SourceError, match=message):
        fetch_raw_prices("quandl", "MSFT", "EOD")
    assert price_server.paths_requested(path) == 4  # the first try and 3 retries


def test_a_silent_server_times_out(source_env, price_server):
    source_env.setenv("PRICE_SOURCE_TIMEOUT", "0.5")
    price_server.hang_seconds = 2
    price_server.scripted[price_server.dataset_path("EOD/MSFT")] = [HANG] * 5  # every retry hangs too
    with pytest.raises(SourceError, match=r"did not answer within 0.5 s"):
        fetch_raw_prices("quandl", "MSFT", "EOD")


def test_a_refused_connection_is_reported(source_env):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source_env.setenv("QUANDL_API_BASE", f"http://127.0.0.1:{port}/api/v3")
    with pytest.raises(SourceError, match="could not connect to Quandl at .*: connection refused"):
        fetch_raw_prices("quandl", "MSFT", "EOD")


def test_csv_url_is_fetched_as_given(source_env, price_server):
    raw = fetch_raw_prices(f"{price_server.url}/files/msft-stooq.csv", "MSFT")
    assert raw.content.startswith(b"Date,Open,High,Low,Close,Volume")
    assert raw.resolved_source == f"{price_server.url}/files/msft-stooq.csv"


def test_url_key_placeholder_is_expanded_and_masked(source_env, price_server):
    source_env.setenv("QUANDL_API_KEY", KEY)
    raw = fetch_raw_prices(f"{price_server.url}/files/EOD-MSFT.csv?api_key=${{QUANDL_API_KEY}}", "MSFT")
    assert price_server.requests[-1].query["api_key"] == [KEY]
    assert KEY not in raw.resolved_source and "${QUANDL_API_KEY}" in raw.resolved_source


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [("/files/none.csv", None, r"does not exist \(404\)"), ("/files/x.csv", 403, r"refused access \(403\)")],
)
def test_url_http_failures_are_explained(source_env, price_server, path, status, message):
    if status:
        price_server.scripted[path] = [status]
    with pytest.raises(SourceError, match=message):
        fetch_raw_prices(price_server.url + path, "MSFT")


def test_literal_keys_in_urls_and_unknown_sources_are_refused_up_front():
    with pytest.raises(SourceError, match=r"contains a key: .*write \$\{QUANDL_API_KEY\}") as caught:
        check_data_source("https://example.test/MSFT.csv?api_key=abc123secret")
    assert "abc123secret" not in str(caught.value)
    with pytest.raises(SourceError, match="unsupported scheme"):
        check_data_source("ftp://example.test/MSFT.csv")
    with pytest.raises(
        SourceError, match="is not 'sample', 'quandl', 'tiingo', 'yahoo', a URL or an existing CSV file"
    ):
        check_data_source("nasdaq")


def test_masking_covers_environment_keys_and_key_like_query_values(monkeypatch):
    monkeypatch.setenv("QUANDL_API_KEY", KEY)
    assert mask_secrets(f"failed with {KEY}") == "failed with ***"
    assert (
        mask_secrets("https://x.test/a.csv?s=msft&token=abc&i=d")
        == "https://x.test/a.csv?s=msft&token=***&i=d"
    )
