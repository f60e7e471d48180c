"""The Tiingo source's pure parts: its answer made CSV, every failure line, the key, the pace, the retries.
Against a real (loopback) server: tests/integration/test_tiingo.py."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from flow_steps.config.errors import SourceError
from flow_steps.config.secrets import mask_secrets
from flow_steps.data.reading import price_column
from flow_steps.data.sources import check_data_source, source_for
from flow_steps.data.sources.http import get_with_retries
from flow_steps.data.sources.tiingo import (
    DEFAULT_REQUESTS_PER_MINUTE,
    FREE_REQUESTS_PER_HOUR,
    TiingoSource,
    prices_csv,
    query,
    source_label,
)

KEY = "tk-Recognisable-Tiingo-0042"
SESSIONS = [
    {
        "date": "2019-01-02T00:00:00.000Z",
        "close": 157.92,
        "high": 158.85,
        "low": 154.23,
        "open": 154.89,
        "volume": 37039737,
        "adjClose": 38.23,
        "adjHigh": 38.46,
        "adjLow": 37.34,
        "adjOpen": 37.5,
        "adjVolume": 148158948,
        "divCash": 0.0,
        "splitFactor": 1.0,
    },
    {
        "date": "2019-01-03T00:00:00.000Z",
        "close": 142.19,
        "high": 145.72,
        "low": 142.0,
        "open": 143.98,
        "volume": 91312195,
        "adjClose": 34.42,
        "adjHigh": 35.28,
        "adjLow": 34.38,
        "adjOpen": 34.86,
        "adjVolume": 365248780,
        "divCash": 0.0,
        "splitFactor": 1.0,
    },
]


@pytest.fixture
def no_tiingo_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("TIINGO_API_KEY", "TIINGO_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def failure(status: int, body: str, ticker: str = "IBM") -> str:
    with pytest.raises(SourceError) as caught:
        prices_csv(ticker, status, body)
    message = str(caught.value)
    assert "\n" not in message and "Tiingo" in message
    return message


def test_sessions_become_csv_with_dates_and_tiingos_field_names() -> None:
    frame = pd.read_csv(io.BytesIO(prices_csv("IBM", 200, json.dumps(SESSIONS))))
    assert list(frame.columns) == ["date", *[name for name in SESSIONS[0] if name != "date"]]
    assert list(frame["date"]) == ["2019-01-02", "2019-01-03"]
    assert list(frame["close"]) == [157.92, 142.19] and list(frame["adjClose"]) == [38.23, 34.42]
    assert list(frame["divCash"]) == [0.0, 0.0] and list(frame["splitFactor"]) == [1.0, 1.0]
    assert price_column(frame) == "adjClose"  # the model trains on the adjusted close, not `close`


def test_an_empty_answer_is_one_line() -> None:
    assert "Tiingo has no prices for IBM in the range asked (an empty answer)" in failure(200, "[]")


def test_an_html_page_with_status_200_is_one_line() -> None:
    message = failure(200, "<!DOCTYPE html>\n<html><body>Sign in</body></html>")
    assert (
        "Tiingo answered an HTML page for IBM where JSON prices were expected: check TIINGO_API_BASE"
        in message
    )


@pytest.mark.parametrize(
    "body",
    [
        # As Tiingo answers its monthly symbol cap: plain text, status 200 (tiingo-python issue 45).
        "You have run over your 500 symbol look up for this month. Please upgrade at "
        "https://api.tiingo.com/pricing to have your limits increased.",
        json.dumps({"detail": "Error: You have run over your hourly request allocation."}),
    ],
)
def test_a_limit_said_with_status_200_names_the_limit_and_what_to_do(body: str) -> None:
    message = failure(200, body)
    assert message.startswith(
        "Tiingo refused IBM: 'You have run over" if "500" in body else "Tiingo refused IBM"
    )
    assert "about 50 requests an hour and 500 symbols a month" in message
    assert "lower a universe's requests_per_minute, or use a paid plan" in message


@pytest.mark.parametrize(
    ("status", "detail"), [(401, "Invalid token."), (403, "Please supply a token"), (200, "Invalid token.")]
)
def test_a_refused_key_names_the_variable(status: int, detail: str) -> None:
    message = failure(status, json.dumps({"detail": detail}))
    assert "Tiingo refused the API key" in message and "set TIINGO_API_KEY" in message
    assert detail in message


def test_an_unknown_ticker_is_named() -> None:
    message = failure(404, json.dumps({"detail": "Error: Ticker 'NOPE' not found"}), ticker="NOPE")
    assert message.startswith("Tiingo does not know the ticker NOPE (404: 'Error: Ticker 'NOPE' not found')")
    assert "check company_abbreviation" in message


def test_429_after_the_retries_names_the_limit_and_the_time_allowed(no_tiingo_env) -> None:
    no_tiingo_env.setenv("PRICE_SOURCE_TIMEOUT", "12")
    message = failure(429, json.dumps({"detail": "Error: You have run over your hourly request allocation."}))
    assert message.startswith("Tiingo still answered 429 Too Many Requests for IBM")
    assert "within PRICE_SOURCE_TIMEOUT=12 s" in message and "wait and run again" in message


def test_server_errors_and_other_statuses() -> None:
    assert "server error 503 for IBM after its retries: try again later" in failure(503, "")
    assert failure(400, json.dumps({"detail": "bad date"})) == "Tiingo answered HTTP 400 for IBM: 'bad date'"


def test_sessions_without_dates_are_refused() -> None:
    assert "without a date in every session" in failure(200, json.dumps([{"close": 1.0}]))
    assert "a date that does not start with YYYY-MM-DD for IBM: '01/02/2019'" in failure(
        200, json.dumps([{"date": "01/02/2019", "close": 1.0}])
    )


def test_a_failure_never_repeats_the_key_even_when_tiingo_echoes_it(no_tiingo_env) -> None:
    no_tiingo_env.setenv("TIINGO_API_KEY", KEY)
    message = failure(401, json.dumps({"detail": f"Invalid token {KEY}"}))
    assert KEY not in message and "***" in message


def test_no_key_is_refused_before_anything_starts(no_tiingo_env) -> None:
    with pytest.raises(SourceError, match="data_source 'tiingo' needs an API key: set TIINGO_API_KEY"):
        check_data_source("tiingo")
    with pytest.raises(SourceError, match="set TIINGO_API_KEY"):
        TiingoSource().check_tickers("tiingo", ["IBM", "MSFT"])
    no_tiingo_env.setenv("TIINGO_API_KEY", KEY)
    assert isinstance(check_data_source("tiingo"), TiingoSource)
    assert isinstance(source_for("tiingo"), TiingoSource)


def test_the_key_is_masked_and_the_lineage_never_holds_it(no_tiingo_env) -> None:
    no_tiingo_env.setenv("TIINGO_API_KEY", KEY)
    assert mask_secrets(f"Authorization: Token {KEY}") == "Authorization: Token ***"
    assert source_label("IBM", "https://api.tiingo.com") == "tiingo:IBM@https://api.tiingo.com"
    assert KEY not in source_label("IBM", f"https://proxy.example/{KEY}")


def test_the_pace_stays_below_the_free_hourly_cap(no_tiingo_env) -> None:
    assert TiingoSource().requests_per_minute == DEFAULT_REQUESTS_PER_MINUTE == 0.75
    assert DEFAULT_REQUESTS_PER_MINUTE * 60 < FREE_REQUESTS_PER_HOUR == 50


def test_the_whole_history_is_asked_and_nothing_after_as_of() -> None:
    assert query(None) == {"startDate": "1962-01-01", "format": "json"}
    as_of = datetime(2026, 12, 4, 21, 30, tzinfo=UTC)
    assert query(as_of) == {"startDate": "1962-01-01", "format": "json", "endDate": "2026-12-04"}


class Answer:
    def __init__(self, status: int, retry_after: str | None = None) -> None:
        self.status_code = status
        self.headers = {"Retry-After": retry_after} if retry_after else {}

    def close(self) -> None:
        pass


class Answers:
    """A session answering `statuses` in turn, on a clock that only the waits move."""

    def __init__(self, *answers: Answer) -> None:
        self.answers, self.now, self.waits, self.timeouts = list(answers), 0.0, [], []

    def get(self, url, params, headers, timeout):  # noqa: ANN001, ANN201 (requests' signature)
        self.timeouts.append(timeout)
        return self.answers.pop(0)

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def fetch(self) -> Answer:
        return get_with_retries(self, "http://x", {}, {}, clock=lambda: self.now, sleep=self.sleep)


def test_retry_after_is_honoured_then_the_prices_come(no_tiingo_env) -> None:
    no_tiingo_env.setenv("PRICE_SOURCE_TIMEOUT", "30")
    answers = Answers(Answer(429, "2"), Answer(503), Answer(200))
    assert answers.fetch().status_code == 200
    assert answers.waits == [2.0, 1.0]  # Retry-After, then the backoff of the second retry
    assert answers.timeouts == [30.0, 28.0, 27.0]  # each request gets only the time left


def test_rate_limited_past_the_retries_returns_the_last_429(no_tiingo_env) -> None:
    no_tiingo_env.setenv("PRICE_SOURCE_TIMEOUT", "30")
    answers = Answers(*(Answer(429) for _ in range(4)))
    assert answers.fetch().status_code == 429
    assert answers.waits == [0.5, 1.0, 2.0] and not answers.answers


def test_a_retry_after_past_the_time_left_gives_up_at_once(no_tiingo_env) -> None:
    no_tiingo_env.setenv("PRICE_SOURCE_TIMEOUT", "5")
    answers = Answers(Answer(429, "60"), Answer(200))
    assert answers.fetch().status_code == 429
    assert answers.waits == []
