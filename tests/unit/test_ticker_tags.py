"""Monitor finds a ticker's forecast runs by a tag per ticker, a page at a time; deploy/ticker_tags.py
gives that tag to the forecast runs logged before it existed (only their `forecast_tickers` list). On a
real sqlite store."""

from __future__ import annotations

import pytest

from deploy import ticker_tags
from deploy.ticker_tags import missing_ticker_tags, tag_forecast_runs
from flow_steps.config.names import forecast_tags
from flow_steps.deployment import realized
from flow_steps.deployment.realized import forecast_runs


def test_a_forecast_runs_tags_are_its_list_and_one_true_tag_per_ticker():
    assert forecast_tags(["MSFT"]) == {"forecast_tickers": ",MSFT,", "forecast_ticker.MSFT": "true"}
    assert forecast_tags(["MSFT", "BRK.B"]) == {
        "forecast_tickers": ",MSFT,BRK.B,",
        "forecast_ticker.MSFT": "true",
        "forecast_ticker.BRK.B": "true",
    }


@pytest.mark.parametrize(
    ("tags", "missing"),
    [
        (
            {"forecast_tickers": ",MSFT,BRK.B,"},
            {"forecast_ticker.MSFT": "true", "forecast_ticker.BRK.B": "true"},
        ),
        (
            {"forecast_tickers": ",MSFT,BRK.B,", "forecast_ticker.MSFT": "true"},
            {"forecast_ticker.BRK.B": "true"},
        ),
        ({"forecast_tickers": ",MSFT,", "forecast_ticker.MSFT": "false"}, {"forecast_ticker.MSFT": "true"}),
        ({"forecast_tickers": ",MSFT,", "forecast_ticker.MSFT": "true"}, {}),
        ({"forecast_tickers": ",,"}, {}),
        ({"model_uri": "models:/stock-MSFT-lstm@champion"}, {}),  # not a forecast run
    ],
)
def test_the_missing_tags_are_those_of_the_listed_tickers_the_run_lacks(tags, missing):
    assert missing_ticker_tags(tags) == missing


def logged(tracking, tags: dict[str, str], deleted: bool = False) -> str:
    run_id = tracking.client.create_run(tracking.experiment_id, tags=tags).info.run_id
    tracking.client.set_terminated(run_id)
    if deleted:
        tracking.client.delete_run(run_id)
    return run_id


def test_older_forecast_runs_are_tagged_once_and_monitor_then_finds_them(tracking, monkeypatch):
    monkeypatch.setattr(ticker_tags, "PAGE", 2)  # three forecast runs to tag: two pages
    older = [logged(tracking, {"forecast_tickers": ",MSFT,"}) for _ in range(2)]
    older.append(logged(tracking, {"forecast_tickers": ",AAPL,MSFT,"}))
    newer = logged(tracking, forecast_tags(["MSFT"]))
    logged(tracking, {"forecast_tickers": ",MSFTX,"}, deleted=True)  # deleted: left alone
    logged(tracking, {"mlflow.runName": "monitor"})  # not a forecast run
    other = logged(tracking, forecast_tags(["MSFTX"]))  # MSFT is not a prefix match
    client, experiment = tracking.client, tracking.experiment_id
    found = lambda ticker: {run.info.run_id for run in forecast_runs(client, experiment, ticker)}  # noqa: E731
    assert found("MSFT") == {newer}  # the older ones carry only the list

    assert sorted(tag_forecast_runs(client, dry_run=True)) == sorted(older)
    assert found("MSFT") == {newer}  # a dry run tags nothing
    assert sorted(tag_forecast_runs(client)) == sorted(older)
    assert found("MSFT") == {*older, newer}
    assert found("AAPL") == {older[2]} and found("MSFTX") == {other}
    assert client.get_run(older[2]).data.tags["forecast_tickers"] == ",AAPL,MSFT,"  # kept
    assert tag_forecast_runs(client) == []  # once


def test_a_tickers_forecast_runs_come_newest_first_a_page_at_a_time_up_to_the_limit(tracking, monkeypatch):
    monkeypatch.setattr(realized, "FORECAST_PAGE", 2)
    monkeypatch.setattr(realized, "SEARCH_LIMIT", 5)
    client = tracking.client
    started = [1_000 * day for day in (3, 1, 7, 5, 2, 6, 4)]
    ids = {}
    for start in started:
        run_id = client.create_run(tracking.experiment_id, start_time=start, tags=forecast_tags(["MSFT"]))
        client.set_terminated(run_id.info.run_id)
        ids[start] = run_id.info.run_id
    unfinished = client.create_run(tracking.experiment_id, start_time=8_000, tags=forecast_tags(["MSFT"]))
    searches = []
    search_runs = client.search_runs

    def counted(*args, **kwargs):
        searches.append(kwargs.get("page_token"))
        return search_runs(*args, **kwargs)

    monkeypatch.setattr(client, "search_runs", counted)
    found = forecast_runs(client, tracking.experiment_id, "MSFT")
    assert next(found).info.run_id == ids[7_000] and len(searches) == 1  # one page read, not all
    newest = [ids[start] for start in (6_000, 5_000, 4_000, 3_000)]
    assert [run.info.run_id for run in found] == newest  # five in all: the limit
    assert len(searches) == 3 and unfinished.info.run_id not in newest
