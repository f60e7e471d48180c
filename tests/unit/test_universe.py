"""The universe's pure rules: which tickers, which source for each, what may run where, the summary."""

from __future__ import annotations

import re
import socket
import zipfile

import pandas as pd
import pytest

from deploy.local_serving import free_port
from flow_steps.config.declarations import PIPELINE_PARAMS
from flow_steps.config.errors import PipelineError
from flow_steps.data.tickers import parse_tickers, ticker_source
from flow_steps.orchestration.cluster import (
    check_cluster_answers,
    check_reachable_store,
    check_universe,
    probe_target,
)
from flow_steps.orchestration.fan_out import SHIPPED_EXCLUDES, universe_metrics
from flow_steps.orchestration.workers import pipeline_arguments
from flow_steps.runtime.tracking import run_name_unless_chosen


def test_tickers_from_a_list_or_a_file(tmp_path):
    assert parse_tickers("msft, AAPL,,MSFT") == ["MSFT", "AAPL"]
    watchlist = tmp_path / "watchlist.txt"
    watchlist.write_text("# my list\nnvda\n\naapl  # phones\nNVDA\n")
    assert parse_tickers(f"@{watchlist}") == ["NVDA", "AAPL"]
    with pytest.raises(PipelineError, match="is not a file"):
        parse_tickers(f"@{tmp_path / 'missing.txt'}")
    with pytest.raises(PipelineError, match="names no ticker"):
        parse_tickers(" , ")


def test_each_ticker_gets_its_own_source():
    assert ticker_source("prices/WIKI-{ticker}.csv", "AAPL") == "prices/WIKI-AAPL.csv"
    assert ticker_source("https://stooq.com/q/d/l/?s={ticker}.us&i=d", "MSFT").endswith("s=MSFT.us&i=d")
    assert ticker_source("quandl", "AAPL") == "quandl"


@pytest.mark.parametrize(
    ("tickers", "source", "message"),
    [
        (["MSFT", "AAPL"], "sample", "holds MSFT only, not AAPL"),
        (["MSFT", "AAPL"], "prices/all.csv", "has no {ticker}: every ticker would read the same prices"),
        (["MSFT"], "ftp://host/{ticker}.csv", "unsupported scheme"),
    ],
)
def test_sources_that_cannot_serve_the_tickers_are_refused(tickers, source, message):
    with pytest.raises(PipelineError, match=message):
        check_universe(tickers, source)


def test_sources_that_can_serve_them_pass():
    check_universe(["MSFT"], "sample")
    check_universe(["MSFT", "AAPL"], "quandl")
    check_universe(["MSFT", "AAPL"], "prices/WIKI-{ticker}.csv")  # a missing file fails its ticker alone


def test_a_remote_cluster_needs_a_store_its_workers_can_reach():
    message = "local store that the workers of the Ray cluster"
    for uri in ("sqlite:///mlflow.db", "file:///tmp/mlruns", "mlruns"):
        with pytest.raises(PipelineError, match=message):
            check_reachable_store("ray://ray-head.example:10001", uri)
    check_reachable_store("ray://ray-head.example:10001", "http://mlflow.example:5000")
    check_reachable_store(None, "sqlite:///mlflow.db")  # a local Ray shares this machine's files
    check_reachable_store("127.0.0.1:6379", "sqlite:///mlflow.db")


def test_every_pipeline_parameter_reaches_each_ticker():
    params = {param.name: param.text(param.default) for param in PIPELINE_PARAMS}
    params["data_source"] = "prices/WIKI-{ticker}.csv"
    arguments = pipeline_arguments("AAPL", params, "a" * 32)
    options = dict(zip(arguments[::2], arguments[1::2], strict=True))
    assert {param.flag for param in PIPELINE_PARAMS} | {"--universe-run-id"} == set(options)
    assert options["--company-abbreviation"] == "AAPL"
    assert options["--data-source"] == "prices/WIKI-AAPL.csv"


def test_summary_metrics():
    summary = pd.DataFrame(
        {
            "ticker": ["A", "B", "C", "D"],
            "status": ["FINISHED", "FINISHED", "FINISHED", "FAILED"],
            "test_rmse_vs_naive": [0.98, 1.01, 1.02, None],
        }
    )
    metrics = universe_metrics(summary, wall_seconds=1800)
    assert metrics == {
        "tickers_total": 4.0,
        "tickers_failed": 1.0,
        "tickers_per_hour": 8.0,
        "share_beating_naive": pytest.approx(1 / 3),
        "median_rmse_vs_naive": 1.01,
    }


@pytest.mark.parametrize(
    ("address", "target"),
    [
        ("127.0.0.1:6379", ("127.0.0.1", 6379)),
        ("head.example:6379", ("head.example", 6379)),
        ("[::1]:6379", ("::1", 6379)),
        ("[fe80::1%eth0]:10001", ("fe80::1%eth0", 10001)),
        ("ray://head.example:10001", None),  # Ray's client protocol: left to Ray
        ("auto", None),
        ("head.example", None),
    ],
)
def test_the_probed_host_and_port_of_a_cluster_address(address, target):
    assert probe_target(address) == target


def test_a_cluster_that_does_not_answer_is_named_in_one_line():
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(
        PipelineError,
        match=rf"no Ray cluster answers at RAY_ADDRESS={re.escape(address)}: connection refused",
    ):
        check_cluster_answers(address)
    check_cluster_answers("ray://head.example:10001")  # Ray's client protocol: left to Ray


@pytest.mark.slow
def test_a_cluster_that_answers_on_ipv6_passes_the_check():
    """The probe itself on [::1]; where the machine has no IPv6 loopback this is reported as skipped
    (-rs), and the address parsing above still covers the brackets."""
    try:
        listening = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError as error:
        pytest.skip(f"no IPv6 loopback on this machine ({error}); probe_target's brackets tested above")
    with listening:
        check_cluster_answers(f"[::1]:{listening.getsockname()[1]}")


def test_a_run_name_mlflow_made_up_is_replaced_and_a_chosen_one_kept(tracking, monkeypatch):
    made_up = tracking.client.create_run(tracking.experiment_id, run_name="skillful-newt-304")
    chosen = tracking.client.create_run(tracking.experiment_id, run_name="nightly watch list")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    assert run_name_unless_chosen("universe") == "universe"
    monkeypatch.setenv("MLFLOW_RUN_ID", made_up.info.run_id)  # `mlflow run -e universe`
    assert run_name_unless_chosen("universe") == "universe"
    monkeypatch.setenv("MLFLOW_RUN_ID", chosen.info.run_id)  # `mlflow run -e universe --run-name ...`
    assert run_name_unless_chosen("universe") is None


def test_a_cluster_gets_the_code_and_none_of_the_local_runs_or_caches(tmp_path):
    """What Ray ships to a cluster's workers (its own packaging of `working_dir`, with our excludes)."""
    from ray._private.runtime_env.packaging import create_package

    project = tmp_path / "project"
    code = [
        "flow_steps/orchestration/driver.py",
        "flow_steps/data/sample_data/WIKI-MSFT.csv",
        "main.py",
        "MLproject",
        "conda.yml",
    ]
    left_here = [
        "mlruns/0/meta.yaml",
        "mlartifacts/1/model.pkl",
        "mlflow.db",
        "mlflow.db-journal",
        ".git/config",
        "outputs/forecast.csv",
        "flow_steps/__pycache__/pipeline.cpython-311.pyc",
        ".venv/bin/python",
    ]
    for name in code + left_here:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(name)
    package = tmp_path / "shipped.zip"
    create_package(str(project), package, include_gitignore=False, excludes=SHIPPED_EXCLUDES)
    with zipfile.ZipFile(package) as shipped:
        files = sorted(name for name in shipped.namelist() if not name.endswith("/"))
    assert files == sorted(code)
