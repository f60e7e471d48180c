"""The `yahoo` source through yfinance against a loopback Yahoo Finance: 429s honoured, every failure one
line, and the pipeline end to end training on the adjusted close."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from flow_steps.config.errors import SourceError
from flow_steps.config.names import DOWNLOAD_STEP, TRAIN_STEP, TRANSFORM_STEP, TRANSFORMED_DATA_PATH
from flow_steps.data.sources import SAMPLE_FILE, fetch_raw_prices
from tests.conftest import TINY_PARAMS, cli_options, run_command
from tests.support.helpers import assert_one_line_failure
from tests.support.yahoo_server import CHART, HTML_PAGE, NO_PRICES, RATE_LIMITED, YahooServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TICKER = "IBM"
SERVED = pd.read_csv(SAMPLE_FILE)  # a real series (Microsoft's, from the sample), served as IBM's


@pytest.fixture
def yahoo() -> Iterator[YahooServer]:
    server = YahooServer(series={TICKER: SERVED}).start()
    yield server
    server.stop()


@pytest.fixture
def yahoo_env(monkeypatch, yahoo) -> YahooServer:
    monkeypatch.setenv("YAHOO_API_BASE", yahoo.url)
    monkeypatch.setenv("PRICE_SOURCE_TIMEOUT", "10")
    return yahoo


def fetched(ticker: str = TICKER) -> pd.DataFrame:
    raw = fetch_raw_prices("yahoo", ticker)
    assert raw.resolved_source == f"yahoo:{ticker}@{os.environ['YAHOO_API_BASE']}"
    return pd.read_csv(io.BytesIO(raw.content))


def test_the_whole_history_arrives_with_adjusted_closes_dividends_and_the_split(yahoo_env):
    prices = fetched()
    assert list(prices.columns) == [
        "Date",
        "Open",
        "High",
        "Low",
        "Close",
        "Adj Close",
        "Volume",
        "Dividends",
        "Stock Splits",
    ]
    assert prices["Date"].tolist() == SERVED["Date"].tolist()
    assert prices["Adj Close"].tolist() == pytest.approx(SERVED["Adj Close"].tolist())
    assert prices.loc[prices["Stock Splits"] > 0, "Date"].tolist() == ["2003-02-18"]  # Microsoft's 2:1
    assert (prices["Dividends"] > 0).sum() > 10


def test_a_process_that_loaded_tensorflow_first_still_fetches(yahoo_env):
    """TensorFlow ships its own libcurl: in a process that loaded it before curl_cffi, curl_cffi's browser
    impersonation fails ("Impersonating chrome152 is not supported"), as in a universe's worker that
    trained a ticker before fetching the next one. The fetch runs in a process of its own."""
    code = (
        "import tensorflow, sys\n"
        "from flow_steps.data.sources import fetch_raw_prices\n"
        "sys.stdout.buffer.write(fetch_raw_prices('yahoo', 'IBM').content)\n"
    )
    result = run_command([sys.executable, "-c", code], dict(os.environ), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert pd.read_csv(io.StringIO(result.stdout))["Date"].tolist() == SERVED["Date"].tolist()


def test_429_answers_are_retried_then_the_prices_arrive(yahoo_env):
    # yfinance retries a refused chart request once itself: two 429s fail one attempt of ours.
    yahoo_env.scripted = [RATE_LIMITED, RATE_LIMITED]
    prices = fetched()
    assert len(prices) == len(SERVED)
    assert len(yahoo_env.chart_requests(TICKER)) == 4  # 2 refused, then the timezone and the history


def test_429_past_the_retries_is_one_line_naming_yahoo_and_what_to_do(yahoo_env):
    yahoo_env.always = RATE_LIMITED
    with pytest.raises(SourceError) as raised:
        fetched()
    line = str(raised.value)
    assert line.startswith("Yahoo Finance still answered 429 Too Many Requests for IBM after 3 of 3 retries")
    assert "rate-limits scripts" in line and "data_source=tiingo" in line and "\n" not in line
    assert len(yahoo_env.chart_requests(TICKER)) == 8  # 4 attempts of ours, each retried once by yfinance


def test_a_history_without_prices_is_one_line(yahoo_env):
    yahoo_env.always = NO_PRICES
    with pytest.raises(SourceError, match=r"^Yahoo Finance has no daily prices for IBM: check"):
        fetched()


def test_a_web_page_answered_200_is_one_line(yahoo_env):
    yahoo_env.always = HTML_PAGE
    with pytest.raises(SourceError, match=r"^Yahoo Finance answered a web page, not prices, for IBM \("):
        fetched()


def test_an_unknown_symbol_stops_the_download_step_in_one_line(tracking, yahoo):
    command = [sys.executable, "-m", "flow_steps.download_raw_data", "--data-source", "yahoo"]
    result = run_command(
        [*command, "--company-abbreviation", "NOPE"], {**tracking.env, "YAHOO_API_BASE": yahoo.url}
    )
    assert_one_line_failure(
        result, "Yahoo Finance has no symbol NOPE (404: No data found, symbol may be delisted)"
    )
    assert "yfinance" not in result.stderr  # its own error lines are not printed besides ours
    [run] = tracking.runs()
    assert run.info.status == "FAILED"
    assert [request.path for request in yahoo.requests if request.path.startswith(CHART)] == [
        CHART + "NOPE"
    ] * 2


def test_main_trains_on_yahoos_adjusted_close_end_to_end(tracking, yahoo):
    options = ["--data-source", "yahoo", "--company-abbreviation", TICKER, *cli_options(TINY_PARAMS)]
    result = run_command([sys.executable, "main.py", *options], {**tracking.env, "YAHOO_API_BASE": yahoo.url})
    assert result.returncode == 0, result.stderr[-3000:]

    [parent] = tracking.parents()
    children = tracking.children(parent)
    assert {name: run.info.status for name, run in children.items()} == {
        DOWNLOAD_STEP: "FINISHED",
        TRANSFORM_STEP: "FINISHED",
        TRAIN_STEP: "FINISHED",
    }
    tags = children[DOWNLOAD_STEP].data.tags
    assert tags["data_source_resolved"] == f"yahoo:{TICKER}@{yahoo.url}"
    assert (tags["raw_rows"], tags["raw_first_date"], tags["raw_last_date"]) == (
        str(len(SERVED)),
        SERVED["Date"].iloc[0],
        SERVED["Date"].iloc[-1],
    )
    transform = children[TRANSFORM_STEP]
    assert transform.data.tags["price_column"] == "Adj Close"
    prepared = pd.read_csv(
        Path(mlflow.artifacts.download_artifacts(f"{transform.info.artifact_uri}/{TRANSFORMED_DATA_PATH}"))
    )
    last = SERVED.tail(len(prepared))
    assert prepared.iloc[:, 0].tolist() == last["Date"].tolist()
    assert prepared.iloc[:, -1].tolist() == pytest.approx(last["Adj Close"].tolist())
    assert prepared.iloc[:, -1].tolist() != pytest.approx(last["Close"].tolist())  # dividends in the window
