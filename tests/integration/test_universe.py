"""Universes on Ray: four tickers on a local Ray with 2 workers (three finish, the short one fails
alone), and one on a separately started Ray cluster."""

from __future__ import annotations

import re
import shutil
import sys

import mlflow
import pandas as pd
import pytest

from flow_steps.constants import UNIVERSE_ENTRY_POINT
from flow_steps.features import minimum_rows
from flow_steps.sources import SAMPLE_FILE
from flow_steps.universe import CHART_PATH, SUMMARY_PATH
from tests.conftest import FIXTURES, TINY_PARAMS, cli_options, run_command
from tests.support.ray_cluster import RayHead

pytestmark = pytest.mark.ray

TICKERS = ["AAA", "BBB", "CCC", "SHORT"]
SHORT_DAYS = 25  # far fewer than a window and a test period need


def write_universe(folder) -> str:
    """Four price files built from the bundled data; SHORT has far too few days. Their {ticker} path."""
    sample = pd.read_csv(SAMPLE_FILE)
    sample.to_csv(folder / "WIKI-AAA.csv", index=False)
    scaled = sample.copy()
    price_columns = ["Open", "High", "Low", "Close", "Adj Close"]
    scaled[price_columns] = scaled[price_columns] * 3  # another price level, the same moves
    scaled.iloc[:1500].to_csv(folder / "WIKI-BBB.csv", index=False)  # and an earlier period
    shutil.copy(FIXTURES / "EOD-MSFT.csv", folder / "WIKI-CCC.csv")  # 2013-2017, newest first
    sample.tail(SHORT_DAYS).to_csv(folder / "WIKI-SHORT.csv", index=False)
    return str(folder / "WIKI-{ticker}.csv")


def test_a_universe_on_local_ray_summarises_every_ticker_and_fails_only_the_bad_one(tracking, tmp_path):
    source = write_universe(tmp_path)
    params = {**TINY_PARAMS, "register_model": "true", "data_source": source}
    command = [sys.executable, "-m", "flow_steps.universe", "--tickers", ",".join(TICKERS)]
    result = run_command([*command, *cli_options(params), "--max-parallel", "2"], tracking.env, timeout=900)

    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "4/4 done (1 failed)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("1 of 4 tickers failed: SHORT")

    [universe] = tracking.runs_of_name(UNIVERSE_ENTRY_POINT)
    assert universe.info.status == "FINISHED"  # the summary is logged; the exit code tells of failures
    summary = pd.read_csv(
        mlflow.artifacts.download_artifacts(run_id=universe.info.run_id, artifact_path=SUMMARY_PATH)
    )
    assert summary.columns.tolist() == [  # as the README lists them
        "ticker",
        "status",
        "reason",
        "test_rmse_vs_naive",
        "directional_accuracy",
        "promotion",
        "champion_version",
        "seconds",
        "run_id",
    ]
    summary = summary.set_index("ticker")
    assert summary.index.tolist() == TICKERS
    assert summary["status"].tolist() == ["FINISHED", "FINISHED", "FINISHED", "FAILED"]
    window, test_fraction = int(TINY_PARAMS["window"]), 0.2
    assert summary.loc["SHORT", "reason"].endswith(
        f"{SHORT_DAYS} rows of prices, but window={window} and test_fraction={test_fraction} need at least "
        f"{minimum_rows(window, test_fraction)}: lower window, raise max_row_limit or use a longer price "
        "history"
    )
    pipelines = {
        run.data.params["company_abbreviation"]: run
        for run in tracking.runs(f"tags.`mlflow.parentRunId` = '{universe.info.run_id}'")
    }
    assert set(pipelines) == set(TICKERS)
    for ticker in TICKERS[:3]:
        run = pipelines[ticker]
        assert run.info.status == "FINISHED"
        assert run.data.params["data_source"] == source.replace("{ticker}", ticker)
        assert summary.loc[ticker, "test_rmse_vs_naive"] == pytest.approx(
            run.data.metrics["test_rmse_vs_naive"]
        )
        assert summary.loc[ticker, "promotion"] == "first_version"
        assert (
            str(tracking.client.get_model_version_by_alias(f"stock-{ticker}-lstm", "champion").version) == "1"
        )
    assert pipelines["SHORT"].info.status == "FAILED"
    ratios = summary["test_rmse_vs_naive"].dropna()
    metrics = universe.data.metrics
    assert metrics["tickers_total"] == 4 and metrics["tickers_failed"] == 1
    assert metrics["share_beating_naive"] == pytest.approx((ratios < 1).mean())
    assert metrics["median_rmse_vs_naive"] == pytest.approx(ratios.median())
    wall_hours = (universe.info.end_time - universe.info.start_time) / 3_600_000
    assert metrics["tickers_per_hour"] == pytest.approx(len(TICKERS) / wall_hours, rel=0.1)
    assert CHART_PATH in {
        item.path for item in tracking.client.list_artifacts(universe.info.run_id, "universe")
    }
    assert not [run for run in tracking.runs() if run.info.status == "RUNNING"]

    # One table of every ticker's champion forecast; SHORT has none, and says so.
    output = tmp_path / "forecasts.csv"
    command = [sys.executable, "-m", "flow_steps.forecast", "--company-abbreviation", ",".join(TICKERS)]
    command += ["--data-source", source, "--horizon", "3", "--output", str(output)]
    batch = run_command(command, tracking.env)
    assert batch.returncode == 1, batch.stderr[-3000:]
    assert "no forecast for 1 of 4 tickers: SHORT: model 'models:/stock-SHORT-lstm@champion'" in batch.stderr
    table = pd.read_csv(output)
    assert table["ticker"].tolist() == ["AAA"] * 3 + ["BBB"] * 3 + ["CCC"] * 3
    assert set(table["model_version"]) == {1}
    for ticker in ("AAA", "BBB", "CCC"):
        assert re.search(rf"^{ticker} +1  \d{{4}}-\d\d-\d\d +\d", batch.stdout, flags=re.MULTILINE)


def test_a_universe_on_a_separately_started_ray_cluster(tracking, tmp_path):
    source = write_universe(tmp_path)
    head = RayHead(num_cpus=2)
    try:
        head.start()
        env = {**tracking.env, **head.client_env()}
        params = {**TINY_PARAMS, "data_source": source}
        command = [sys.executable, "-m", "flow_steps.universe", "--tickers", "CCC", *cli_options(params)]
        result = run_command(command, env, timeout=900)
        diagnostics = head.diagnostics() if result.returncode else ""
    finally:
        head.stop()
    assert result.returncode == 0, result.stderr[-3000:] + diagnostics
    [universe] = tracking.runs_of_name(UNIVERSE_ENTRY_POINT)
    assert universe.data.tags["ray_address"] == head.address
    assert universe.data.metrics["tickers_total"] == 1 and universe.data.metrics["tickers_failed"] == 0
    [pipeline] = tracking.runs(f"tags.`mlflow.parentRunId` = '{universe.info.run_id}'")
    assert pipeline.data.params["company_abbreviation"] == "CCC"
    assert all(run.info.status == "FINISHED" for run in tracking.runs())
