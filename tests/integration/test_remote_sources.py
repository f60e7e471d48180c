"""The pipeline end to end on the loopback Quandl API and a CSV URL; the API key never leaks."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from flow_steps.config.declarations import DOWNLOAD_PARAMS
from flow_steps.config.names import DOWNLOAD_STEP, TRAIN_STEP, TRANSFORM_STEP
from flow_steps.orchestration.reuse import download_reuse_tags
from flow_steps.orchestration.steps import StepRunner
from flow_steps.runtime.lineage import code_version
from tests.conftest import EXPERIMENT, FIXTURES, TINY_PARAMS, run_command
from tests.support.helpers import mlflow_run, prepared_prices

KEY = "qk-LEAK-CANARY-7f3a9c2e51"


def remote_env(tracking, price_server, key: str = KEY) -> dict[str, str]:
    return {
        **tracking.env,
        "QUANDL_API_BASE": price_server.api_base,
        "QUANDL_API_KEY": key,
        "PRICE_SOURCE_TIMEOUT": "10",
    }


def assert_no_leak(tracking, *outputs: str, artifacts_expected: bool = True) -> None:
    """The key is in no output, nowhere in the tracking database and in no artifact file."""
    for output in outputs:
        assert KEY not in output
    stored = [Path(tracking.uri.removeprefix("sqlite:///"))]
    stored += [path for path in (tracking.folder / "artifacts").rglob("*") if path.is_file()]
    assert (len(stored) > 1) == artifacts_expected
    for path in stored:
        assert KEY.encode() not in path.read_bytes(), path


def test_mlflow_run_on_quandl_eod_trains_end_to_end_and_never_leaks_the_key(tracking, price_server):
    price_server.required_key = KEY
    params = {"data_source": "quandl", "quandl_database": "EOD", **TINY_PARAMS}
    result = run_command(mlflow_run(params, experiment=EXPERIMENT), remote_env(tracking, price_server))
    assert result.returncode == 0, result.stderr[-3000:]

    [parent] = tracking.parents()
    children = tracking.children(parent)
    assert {name: run.info.status for name, run in children.items()} == {
        DOWNLOAD_STEP: "FINISHED",
        TRANSFORM_STEP: "FINISHED",
        TRAIN_STEP: "FINISHED",
    }
    download = children[DOWNLOAD_STEP]
    tags = download.data.tags
    assert tags["data_source_resolved"] == f"quandl:EOD/MSFT@{price_server.api_base}"
    served = pd.read_csv(FIXTURES / "EOD-MSFT.csv")["Date"]  # what the stand-in serves, newest first
    assert (tags["raw_rows"], tags["raw_first_date"], tags["raw_last_date"]) == (
        str(len(served)),
        served.min(),
        served.max(),
    )
    raw = Path(
        mlflow.artifacts.download_artifacts(run_id=download.info.run_id, artifact_path="raw-data/MSFT.csv")
    )
    assert tags["raw_sha256"] == hashlib.sha256(raw.read_bytes()).hexdigest()
    assert children[TRANSFORM_STEP].data.tags["price_column"] == "Adj_Close"
    assert price_server.requests[0].headers.get("x-api-token") == KEY
    assert_no_leak(tracking, result.stdout, result.stderr)


def test_the_download_and_transform_steps_read_a_csv_url(tracking, price_server, monkeypatch):
    """A CSV URL through the steps that read it (the driver passes it on unchanged: the Quandl test
    above runs every step through `mlflow run`); in this process, which spares two process start-ups."""
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    url = f"{price_server.url}/files/msft-stooq.csv"
    raw, _ = prepared_prices("--data-source", url)
    download, transform = (tracking.runs_of_name(step)[0] for step in (DOWNLOAD_STEP, TRANSFORM_STEP))
    assert download.info.status == transform.info.status == "FINISHED"
    assert download.data.tags["data_source_resolved"] == url
    assert transform.data.tags["price_column"] == "Close"  # Stooq's layout has no adjusted close
    assert transform.data.tags["source_newest_first"] == "True"
    assert transform.data.params["dataset_stock_csv"] == raw


def test_a_rejected_key_is_not_repeated_even_when_the_server_echoes_it(tracking, price_server):
    price_server.required_key = "the-right-key-000"
    result = run_command(
        [
            sys.executable,
            "-m",
            "flow_steps.download_raw_data",
            "--data-source",
            "quandl",
            "--quandl-database",
            "EOD",
        ],
        remote_env(tracking, price_server),
    )
    assert result.returncode == 1
    assert "(401, the key was rejected)" in result.stderr
    [run] = tracking.runs()
    assert run.info.status == "FAILED"
    assert_no_leak(tracking, result.stdout, result.stderr, artifacts_expected=False)


@pytest.mark.parametrize("source", ["url", "quandl"])
def test_the_driver_downloads_a_remote_source_again_whatever_finished_before(
    tracking, price_server, monkeypatch, source
):
    """A URL or Quandl dataset may change at any time: the driver launches its download step each time,
    although a finished download with the same parameters and code version exists."""
    for name, value in remote_env(tracking, price_server).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    price_server.required_key = KEY
    data_source = f"{price_server.url}/files/msft-stooq.csv" if source == "url" else "quandl"
    params = {
        **{param.name: param.text(param.default) for param in DOWNLOAD_PARAMS},
        "data_source": data_source,
        "quandl_database": "EOD",
    }
    with mlflow.start_run(experiment_id=tracking.experiment_id) as parent:
        steps = StepRunner(tracking.client, parent, code_version(), "MSFT")
        first = steps.run(DOWNLOAD_STEP, params, download_reuse_tags(data_source))
        second = steps.run(DOWNLOAD_STEP, params, download_reuse_tags(data_source))
    assert first.info.status == second.info.status == "FINISHED"
    assert first.info.run_id != second.info.run_id and steps.reused[DOWNLOAD_STEP] is False
    assert steps.find_finished(DOWNLOAD_STEP, params, {}).info.run_id == second.info.run_id  # it was there
