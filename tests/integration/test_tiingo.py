"""The Tiingo source against a loopback server that speaks Tiingo's documented API: retries, every
refusal in one line, the key never stored, and a model trained on the adjusted close."""

from __future__ import annotations

import io
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from flow_steps.config.errors import SourceError
from flow_steps.config.names import (
    DOWNLOAD_STEP,
    TAG_PRICE_COLUMN,
    TRAIN_STEP,
    TRANSFORM_STEP,
    TRANSFORMED_DATA_PATH,
    UNIVERSE_ENTRY_POINT,
)
from flow_steps.data.sources import SourceOptions, fetch_raw_prices, source_for
from tests.conftest import TINY_PARAMS, cli_options, run_command
from tests.support.helpers import assert_one_line_failure
from tests.support.tiingo_server import EMPTY, HTML_PAGE, Scripted, TiingoServer, rate_limited, tiingo_frame

KEY = "tk-LEAK-CANARY-5b8e1d07c3"
TICKER = "IBM"  # served with the bundled Microsoft prices (a split, dividends)


@pytest.fixture
def tiingo():
    """The stand-in serving Microsoft's sample prices (a split, dividends) as Tiingo would, for KEY."""
    server = TiingoServer(frames={TICKER: tiingo_frame()}, token=KEY).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tiingo_env(monkeypatch, tiingo):
    monkeypatch.setenv("TIINGO_API_KEY", KEY)
    monkeypatch.setenv("TIINGO_API_BASE", tiingo.url)
    monkeypatch.setenv("PRICE_SOURCE_TIMEOUT", "10")
    return monkeypatch


def fetch(ticker: str = TICKER, as_of: datetime | None = None) -> pd.DataFrame:
    raw = source_for("tiingo").fetch("tiingo", ticker, SourceOptions(as_of=as_of))
    return pd.read_csv(io.BytesIO(raw.content))


def refusal(ticker: str = TICKER, as_of: datetime | None = None) -> str:
    with pytest.raises(SourceError) as caught:
        fetch(ticker, as_of)
    message = str(caught.value)
    assert "\n" not in message and KEY not in message
    return message


def test_429_with_retry_after_then_the_prices(tiingo, tiingo_env):
    tiingo.script = [rate_limited("1"), rate_limited("1")]
    raw = fetch_raw_prices("tiingo", TICKER, now=pd.Timestamp("2026-12-04 22:00", tz="UTC"))
    frame = pd.read_csv(io.BytesIO(raw.content))
    assert len(frame) == 3270 and frame["date"].iloc[0] == "2000-03-01"
    assert raw.resolved_source == f"tiingo:{TICKER}@{tiingo.url}"
    assert len(tiingo.requests) == 3
    last = tiingo.requests[-1]
    assert last.path == f"/tiingo/daily/{TICKER}/prices"
    assert last.query == {"startDate": ["1962-01-01"], "format": ["json"], "endDate": ["2026-12-04"]}
    assert {name.lower(): value for name, value in last.headers.items()}["authorization"] == f"Token {KEY}"
    assert all(KEY not in request.path and KEY not in str(request.query) for request in tiingo.requests)


def test_429_past_the_limit_is_one_line(tiingo, tiingo_env):
    tiingo.repeat = rate_limited("1")
    message = refusal()
    assert message.startswith("Tiingo still answered 429 Too Many Requests for IBM after its retries")
    assert "lower a universe's requests_per_minute, or use a paid plan" in message
    assert len(tiingo.requests) == 4  # the first try and 3 retries, a second apart


def test_a_refused_key_is_one_line_naming_the_variable(tiingo, tiingo_env):
    tiingo_env.setenv("TIINGO_API_KEY", "tk-wrong-key-1234")
    message = refusal()
    assert message.startswith("Tiingo refused the API key (401: 'Invalid token.'): set TIINGO_API_KEY")
    assert "tk-wrong-key-1234" not in message


def test_an_unknown_ticker_is_named(tiingo, tiingo_env):
    message = refusal("NOPE")
    assert message.startswith("Tiingo does not know the ticker NOPE (404: 'Error: Ticker 'NOPE' not found')")


def test_as_of_bounds_the_range_and_an_empty_range_is_one_line(tiingo, tiingo_env):
    frame = fetch(as_of=datetime(2003, 2, 18, 22, 0, tzinfo=UTC))
    assert frame["date"].iloc[-1] == "2003-02-18" and tiingo.requests[-1].query["endDate"] == ["2003-02-18"]
    message = refusal(as_of=datetime(1999, 1, 4, tzinfo=UTC))  # before the first session served
    assert message.startswith("Tiingo has no prices for IBM in the range asked (an empty answer)")
    tiingo.script = [EMPTY]
    assert refusal().startswith("Tiingo has no prices for IBM")


def test_an_html_page_with_status_200_is_one_line(tiingo, tiingo_env):
    tiingo.script = [HTML_PAGE]
    assert refusal().startswith("Tiingo answered an HTML page for IBM where JSON prices were expected")


def test_a_hang_is_one_line_within_the_timeout(tiingo, tiingo_env):
    tiingo_env.setenv("PRICE_SOURCE_TIMEOUT", "1")
    tiingo.script = [Scripted(hang_seconds=3)]
    assert refusal() == f"Tiingo at {tiingo.url} did not answer within 1 s"


def test_the_stand_in_also_answers_csv_as_tiingo_documents(tiingo):
    import requests

    answer = requests.get(
        f"{tiingo.url}/tiingo/daily/{TICKER.lower()}/prices",
        params={"startDate": "2013-02-27", "endDate": "2013-02-28", "format": "csv"},
        headers={"Authorization": f"Token {KEY}"},
        timeout=10,
    )
    frame = pd.read_csv(io.StringIO(answer.text))
    assert answer.status_code == 200 and list(frame["date"]) == ["2013-02-27", "2013-02-28"]
    assert list(frame.columns[1:]) == [
        "close",
        "high",
        "low",
        "open",
        "volume",
        "adjClose",
        "adjHigh",
        "adjLow",
        "adjOpen",
        "adjVolume",
        "divCash",
        "splitFactor",
    ]


def test_no_key_is_refused_before_any_run_or_request(tracking, tiingo):
    env = {**tracking.env, "TIINGO_API_BASE": tiingo.url}
    env.pop("TIINGO_API_KEY", None)
    result = run_command([sys.executable, "main.py", "--data-source", "tiingo"], env, timeout=120)
    assert_one_line_failure(result, "data_source 'tiingo' needs an API key: set TIINGO_API_KEY", exit_code=2)
    assert tracking.runs() == [] and tiingo.requests == []


def test_the_pipeline_trains_on_adjclose_and_never_stores_the_key(tracking, tiingo):
    env = {**tracking.env, "TIINGO_API_KEY": KEY, "TIINGO_API_BASE": tiingo.url, "PRICE_SOURCE_TIMEOUT": "10"}
    options = ["--data-source", "tiingo", "--company-abbreviation", TICKER, *cli_options(TINY_PARAMS)]
    result = run_command([sys.executable, "main.py", *options], env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert KEY not in result.stdout + result.stderr

    [parent] = tracking.parents()
    steps = tracking.children(parent)
    assert {name: run.info.status for name, run in steps.items()} == {
        DOWNLOAD_STEP: "FINISHED",
        TRANSFORM_STEP: "FINISHED",
        TRAIN_STEP: "FINISHED",
    }
    assert steps[DOWNLOAD_STEP].data.tags["data_source_resolved"] == f"tiingo:{TICKER}@{tiingo.url}"
    transform = steps[TRANSFORM_STEP]
    assert transform.data.tags[TAG_PRICE_COLUMN] == "adjClose"
    prepared = pd.read_csv(
        mlflow.artifacts.download_artifacts(run_id=transform.info.run_id, artifact_path=TRANSFORMED_DATA_PATH)
    )
    served = tiingo_frame().set_index("date").loc[prepared["Date"]]
    assert len(prepared) == int(TINY_PARAMS["max_row_limit"])
    assert prepared["Close"].to_numpy() == pytest.approx(served["adjClose"].to_numpy())
    assert (abs(prepared["Close"].to_numpy() - served["close"].to_numpy()) > 0.01).any()  # dividends

    database = Path(tracking.uri.removeprefix("sqlite:///"))
    artifacts = [path for path in (tracking.folder / "artifacts").rglob("*") if path.is_file()]
    assert database.stat().st_size > 0 and len(artifacts) >= 3  # raw prices, prepared prices, the model
    stored_files = [path for path in tracking.folder.rglob("*") if path.is_file()]  # the database's WAL too
    assert database in stored_files and set(artifacts) <= set(stored_files)
    for path in stored_files:
        assert KEY.encode() not in path.read_bytes(), path
    stored = [*parent.data.params.values(), *parent.data.tags.values()]
    for run in steps.values():
        stored += [*run.data.params.values(), *run.data.tags.values()]
    assert stored and not [value for value in stored if KEY in value]


SIX = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]
PACE = 6.0  # requests a minute: a start every 10 s
LIMIT_SECONDS = 4.0  # the stand-in refuses prices asked sooner than this after the last ones


def test_a_paced_universe_of_six_tickers_stays_under_the_limit(tracking):
    server = TiingoServer(
        frames=dict.fromkeys(SIX, tiingo_frame()), token=KEY, min_seconds_between=LIMIT_SECONDS
    )
    env = {**tracking.env, "TIINGO_API_KEY": KEY, "TIINGO_API_BASE": server.url, "PRICE_SOURCE_TIMEOUT": "10"}
    server.start()
    try:
        # The limit bites: two tickers asked at once (as two free workers would) and the second is refused.
        with pytest.MonkeyPatch.context() as patch:
            for name in ("TIINGO_API_KEY", "TIINGO_API_BASE", "PRICE_SOURCE_TIMEOUT"):
                patch.setenv(name, env[name])
            fetch_raw_prices("tiingo", "AAA")
            with pytest.raises(SourceError, match="429"):
                fetch_raw_prices("tiingo", "BBB")
        server.requests.clear()
        time.sleep(LIMIT_SECONDS)

        options = [*cli_options(TINY_PARAMS), "--data-source", "tiingo", "--max-parallel", "2"]
        command = [sys.executable, "-m", "flow_steps.universe", "--tickers", ",".join(SIX), *options]
        result = run_command([*command, "--requests-per-minute", str(PACE)], env, timeout=900)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tickers wait their turn" in result.stderr
    prices = [request for request in server.requests if request.path.endswith("/prices")]
    assert [request.status for request in prices] == [200] * 6  # one request a ticker, none refused
    [universe] = tracking.runs_of_name(UNIVERSE_ENTRY_POINT)
    wall_seconds = len(SIX) / universe.data.metrics["tickers_per_hour"] * 3600
    assert wall_seconds >= (len(SIX) - 1) * 60 / PACE  # the pace shows in the wall time
