"""Universes on Ray: four tickers on a local Ray with 2 workers (three finish, the short one fails
alone), and one on a separately started Ray cluster."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from deploy.local_serving import stop_process_group
from flow_steps.config.names import (
    DOWNLOAD_STEP,
    TAG_PROCESS_HOST,
    TAG_PROCESS_ID,
    TAG_PROCESS_STARTED,
    TRAIN_STEP,
    TRANSFORM_STEP,
    UNIVERSE_ENTRY_POINT,
)
from flow_steps.data.sources import SAMPLE_FILE
from flow_steps.model.features import minimum_rows
from flow_steps.orchestration.fan_out import CHART_PATH, SUMMARY_PATH
from flow_steps.orchestration.workers import TickerWorker
from flow_steps.runtime.interruption import EXIT_CODES, is_alive
from tests.conftest import FIXTURES, PROJECT_ROOT, TINY_PARAMS, cli_options, run_command, temporary_tracking
from tests.support.helpers import mlflow_run
from tests.support.price_server import HANG
from tests.support.ray_cluster import RayHead

pytestmark = pytest.mark.ray

TICKERS = ["AAA", "BBB", "CCC", "SHORT"]
SHORT_DAYS = 25  # far fewer than a window and a test period need
SECRETS = {"MLFLOW_TRACKING_PASSWORD": "universe-pw-c4f1e8a2", "QUANDL_API_KEY": "qk-universe-9d2b7e"}


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
    env = {**tracking.env, **SECRETS}  # forwarded to every ticker's pipeline, and never to be logged
    result = run_command([*command, *cli_options(params), "--max-parallel", "2"], env, timeout=900)

    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "4/4 done (1 failed)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("1 of 4 tickers failed: SHORT")

    [universe] = tracking.runs_of_name(UNIVERSE_ENTRY_POINT)
    assert universe.info.status == "FINISHED"  # the summary is logged; the exit code tells of failures
    summary = pd.read_csv(
        mlflow.artifacts.download_artifacts(run_id=universe.info.run_id, artifact_path=SUMMARY_PATH)
    )
    assert summary.columns.tolist() == [  # as docs/universe.md lists them
        "ticker",
        "status",
        "reason",
        "test_rmse_vs_naive",
        "directional_accuracy",
        "promotion",
        "champion_version",
        "seconds",
        "worker_mib",
        "run_id",
    ]
    assert (summary["worker_mib"] > 100).all()  # in-worker: each worker's memory after the ticker
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
    # Tickers over the fan-out's wall time: longer than the slowest ticker, shorter than the whole run.
    run_hours = (universe.info.end_time - universe.info.start_time) / 3_600_000
    slowest_hours = (summary["seconds"].max() - 0.05) / 3600  # seconds are rounded to 0.1
    assert len(TICKERS) / run_hours <= metrics["tickers_per_hour"] <= len(TICKERS) / slowest_hours
    assert CHART_PATH in {
        item.path for item in tracking.client.list_artifacts(universe.info.run_id, "universe")
    }
    assert not [run for run in tracking.runs() if run.info.status == "RUNNING"]
    stored = [Path(tracking.uri.removeprefix("sqlite:///"))]
    stored += [path for path in (tracking.folder / "artifacts").rglob("*") if path.is_file()]
    for secret in SECRETS.values():
        assert secret not in result.stdout + result.stderr
        assert not [path for path in stored if secret.encode() in path.read_bytes()]

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
        # The MLproject entry point, with max_parallel=0: as many tickers at a time as the cluster has CPUs.
        params = {**TINY_PARAMS, "data_source": source, "tickers": "CCC", "max_parallel": "0"}
        result = run_command(mlflow_run(params, UNIVERSE_ENTRY_POINT), env, timeout=900)
        diagnostics = head.diagnostics() if result.returncode else ""
    finally:
        head.stop()
    assert result.returncode == 0, result.stderr[-3000:] + diagnostics
    [universe] = tracking.runs_of_name(UNIVERSE_ENTRY_POINT)
    assert universe.data.tags["mlflow.project.entryPoint"] == UNIVERSE_ENTRY_POINT
    assert universe.data.tags["ray_address"] == head.address and universe.data.params["max_parallel"] == "0"
    assert f"Running 1 tickers, {head.num_cpus} at a time, on Ray ({head.address})" in result.stderr
    assert universe.data.metrics["tickers_total"] == 1 and universe.data.metrics["tickers_failed"] == 0
    [pipeline] = tracking.runs(f"tags.`mlflow.parentRunId` = '{universe.info.run_id}'")
    assert pipeline.data.params["company_abbreviation"] == "CCC"
    assert all(run.info.status == "FINISHED" for run in tracking.runs())


def test_ctrl_c_cancels_the_running_ticker_and_never_starts_the_others(tracking, price_server):
    """Three tickers, one at a time, each download waiting on a silent server: Ctrl-C while the first
    waits ends it, its pipeline and the universe KILLED, exits 130, and the other two never start."""
    for ticker in ("AAA", "BBB", "CCC"):
        price_server.scripted[f"/files/{ticker}.csv"] = [HANG]
    price_server.hang_seconds = 120
    params = {**TINY_PARAMS, "data_source": f"{price_server.url}/files/{{ticker}}.csv"}
    command = [sys.executable, "-m", "flow_steps.universe", "--tickers", "AAA,BBB,CCC", "--max-parallel", "1"]
    process = subprocess.Popen(
        [*command, *cli_options(params)],
        cwd=PROJECT_ROOT,
        env={**tracking.env, "PRICE_SOURCE_TIMEOUT": "120"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not [run for run in tracking.runs_of(DOWNLOAD_STEP) if TAG_PROCESS_ID in run.data.tags]:
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
            time.sleep(0.5)
        time.sleep(1)  # into the request
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's process group
        _, stderr = process.communicate(timeout=180)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == EXIT_CODES[signal.SIGINT], stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert (
        stderr.strip().splitlines()[-1].endswith("Universe interrupted by SIGINT; its runs are marked KILLED")
    )
    [universe] = tracking.runs_of_name(UNIVERSE_ENTRY_POINT)
    assert universe.info.status == "KILLED"
    [pipeline] = tracking.runs(f"tags.`mlflow.parentRunId` = '{universe.info.run_id}'")
    assert pipeline.data.params["company_abbreviation"] == "AAA" and pipeline.info.status == "KILLED"
    [download] = tracking.runs_of(DOWNLOAD_STEP)
    assert download.info.status == "KILLED"
    assert not [run for run in tracking.runs() if run.info.status == "RUNNING"]
    assert (
        price_server.paths_requested("/files/BBB.csv") == price_server.paths_requested("/files/CCC.csv") == 0
    )


def test_a_ticker_whose_ray_task_dies_fails_alone_and_its_pipeline_stops(tracking, tmp_path):
    """executor=process: SIGKILL to the Ray worker whose task runs AAA's `python main.py` while AAA trains:
    AAA is reported failed, its pipeline stops with the worker (its runs KILLED), BBB finishes."""
    source = write_universe(tmp_path)
    params = {**TINY_PARAMS, "data_source": source, "executor": "process"}
    command = [sys.executable, "-m", "flow_steps.universe", "--tickers", "AAA,BBB", "--max-parallel", "2"]
    process = subprocess.Popen(
        [*command, *cli_options(params)],
        cwd=PROJECT_ROOT,
        env=tracking.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not [run for run in tracking.runs_of_name(f"AAA {TRAIN_STEP}") if run.info.status == "RUNNING"]:
            assert time.monotonic() < deadline and process.poll() is None, "AAA never started training"
            time.sleep(0.2)
        [pipeline] = pipelines_of("AAA", tracking.uri)
        worker = int(Path(f"/proc/{pipeline}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its ppid
        os.kill(worker, signal.SIGKILL)
        _, stderr = process.communicate(timeout=600)
        deadline = time.monotonic() + 120
        while pipelines_of("AAA", tracking.uri):  # stopping, after its worker's death
            assert time.monotonic() < deadline, "AAA's pipeline outlived its worker"
            time.sleep(0.2)
    finally:
        if process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 1, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].endswith("1 of 2 tickers failed: AAA")
    [universe] = tracking.runs_of_name(UNIVERSE_ENTRY_POINT)
    summary = pd.read_csv(mlflow.artifacts.download_artifacts(f"{universe.info.artifact_uri}/{SUMMARY_PATH}"))
    rows = summary.set_index("ticker").fillna("")
    assert rows.loc["AAA", "status"] == "FAILED", summary
    assert "its Ray worker died" in rows.loc["AAA", "reason"]
    assert rows.loc["BBB", "status"] == "FINISHED"
    assert not [run.info.run_name for run in tracking.runs() if run.info.status == "RUNNING"]
    [aaa_training] = tracking.runs_of_name(f"AAA {TRAIN_STEP}")
    assert (
        tracking.client.get_run(rows.loc["AAA", "run_id"]).info.status == aaa_training.info.status == "KILLED"
    )


def pipelines_of(ticker: str, tracking_uri: str) -> list[int]:
    """Pids of the `python main.py` processes for `ticker` that log to `tracking_uri`."""
    found = []
    for entry in Path("/proc").iterdir():
        with suppress(OSError):
            if not entry.name.isdigit():
                continue
            command = (entry / "cmdline").read_bytes().split(b"\0")
            environment = (entry / "environ").read_bytes().split(b"\0")
            if (
                b"main.py" in command
                and ticker.encode() in command
                and (f"MLFLOW_TRACKING_URI={tracking_uri}".encode() in environment)
            ):
                found.append(int(entry.name))
    return found


def ray_worker_holding(ticker: str, tracking) -> int | None:
    """The pid of the in-worker Ray worker that runs `ticker` now: the process its RUNNING runs are
    tagged with (the pipeline writes its host and pid on every run); None until one has started."""
    running = f"attributes.run_name LIKE '{ticker} %' and attributes.status = 'RUNNING'"
    tagged = [run.data.tags for run in tracking.runs(running) if TAG_PROCESS_ID in run.data.tags]
    if not tagged:
        return None
    tags = tagged[0]
    assert tags[TAG_PROCESS_HOST] == socket.gethostname()
    pid = int(tags[TAG_PROCESS_ID])
    assert is_alive(pid, tags.get(TAG_PROCESS_STARTED)), f"{ticker}'s process {pid} is gone already"
    title = Path(f"/proc/{pid}/cmdline").read_bytes()
    assert title.startswith(f"ray::{TickerWorker.__name__}".encode()), title  # a Ray worker, not a driver
    return pid


def test_a_worker_killed_mid_ticker_costs_that_ticker_only(tracking, tmp_path):
    """executor=in-worker: the Ray worker running AAA is killed from outside (SIGKILL, as an out-of-memory
    kill would) once AAA's runs have started; AAA is FAILED with the reason, its runs are closed, the
    replaced worker and the other one finish the rest."""
    source = write_universe(tmp_path)
    params = {**TINY_PARAMS, "data_source": source}
    command = [sys.executable, "-m", "flow_steps.universe", "--tickers", "AAA,BBB,CCC", "--max-parallel", "2"]
    with (tmp_path / "stderr").open("w+") as errors:
        process = subprocess.Popen(
            [*command, *cli_options(params)],
            cwd=PROJECT_ROOT,
            env=tracking.env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            text=True,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 300
            while not (worker := ray_worker_holding("AAA", tracking)):
                assert time.monotonic() < deadline and process.poll() is None, "AAA never started"
                time.sleep(0.2)
            os.kill(worker, signal.SIGKILL)
            process.wait(timeout=600)
        finally:
            if process.poll() is None:
                stop_process_group(process)
        errors.seek(0)
        stderr = errors.read()
    assert process.returncode == 1, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].endswith("1 of 3 tickers failed: AAA")
    [universe] = tracking.runs_of_name(UNIVERSE_ENTRY_POINT)
    summary = pd.read_csv(mlflow.artifacts.download_artifacts(f"{universe.info.artifact_uri}/{SUMMARY_PATH}"))
    rows = summary.set_index("ticker").fillna("")
    assert rows.loc["AAA", "status"] == "FAILED" and "its Ray worker died" in rows.loc["AAA", "reason"]
    assert list(rows.loc[["BBB", "CCC"], "status"]) == ["FINISHED", "FINISHED"]
    assert not [run.info.run_name for run in tracking.runs() if run.info.status == "RUNNING"]
    assert "KILLED" in {run.info.status for run in tracking.runs() if run.info.run_name.startswith("AAA")}


def test_both_executors_make_the_same_runs_and_metrics(tmp_path):
    """The same two tickers in-worker and as processes, each in its own store: the same run tree (names,
    entry points, params, tags, artifact paths, dataset inputs), the same metrics to 1e-9 with the same
    histories, and the same registry (versions, their tags and descriptions, aliases). In-worker, one
    worker runs both: BBB trains the model AAA traced (fits large enough to be traced, not eager). The
    executors write through different code paths (batched writes, the run name given as an in-worker step
    resumes its run): the tags and the registry show that they write the same."""
    source = write_universe(tmp_path)
    traced = {**TINY_PARAMS, "window": "60", "epochs": "2"}  # 300 days: 6 batches x 2 epochs x 60 days
    trees, registries = {}, {}
    for executor, workers in (("in-worker", "1"), ("process", "2")):
        folder = tmp_path / executor
        folder.mkdir()
        with temporary_tracking(folder) as store:
            params = {**traced, "data_source": source, "executor": executor, "register_model": "true"}
            params["max_parallel"] = workers
            command = [sys.executable, "-m", "flow_steps.universe", "--tickers", "AAA,BBB"]
            result = run_command([*command, *cli_options(params)], store.env, timeout=600)
            assert result.returncode == 0, result.stderr[-3000:]
            trees[executor] = run_tree(store)
            registries[executor] = registry(store)
    assert registries["in-worker"] == registries["process"]
    assert {name: models["aliases"] for name, models in registries["process"].items()} == {
        f"stock-{t}-lstm": {"challenger": "1", "champion": "1"} for t in ("AAA", "BBB")
    }
    same, other = trees["in-worker"], trees["process"]
    assert same.keys() == other.keys() and len(same) == 1 + 2 * 5  # universe, 2 x (pipeline + 4 steps)
    read_prices = [name for name, run in same.items() if run["dataset inputs"]]
    assert sorted(read_prices) == [
        f"{t} {step}" for t in ("AAA", "BBB") for step in (TRAIN_STEP, TRANSFORM_STEP)
    ]
    for name, run in same.items():
        assert {key: value for key, value in run.items() if key not in ("metrics", "histories")} == {
            key: value for key, value in other[name].items() if key not in ("metrics", "histories")
        }, name
        assert run["metrics"].keys() == other[name]["metrics"].keys(), name
        for metric, value in run["metrics"].items():
            if "seconds" not in metric and "per_hour" not in metric:
                assert value == pytest.approx(other[name]["metrics"][metric], abs=1e-9), (name, metric)
                steps = [step for step, _ in run["histories"][metric]]
                assert steps == [step for step, _ in other[name]["histories"][metric]], (name, metric)
                assert [value for _, value in run["histories"][metric]] == pytest.approx(
                    [value for _, value in other[name]["histories"][metric]], abs=1e-9
                ), (name, metric)


RUN_ID = re.compile(r"[0-9a-f]{32}")
# Tags that say how and when a run ran, not what it found: its process, the executor's backend, the time.
HOW_IT_RAN = ("process_", "mlflow.project.backend", "mlflow.project.env", "mlflow.source.", "as_of_utc")


def tags_of(run, store) -> dict[str, str]:
    """A run's tags but HOW_IT_RAN, run ids and the store's folder replaced."""
    return {
        key: RUN_ID.sub("<run id>", value.replace(str(store.folder), "<store>"))
        for key, value in run.data.tags.items()
        if not key.startswith(HOW_IT_RAN)
    }


def registry(store) -> dict[str, dict]:
    """Each registered model: its description, aliases and versions (tags, description, source run's
    name), run ids replaced by run names."""
    names = {run.info.run_id: run.info.run_name for run in store.runs()}

    def named(text: str) -> str:
        return RUN_ID.sub(lambda found: names.get(found[0], "<run id>"), text or "")

    return {
        model.name: {
            "description": model.description,
            "aliases": {alias: str(version) for alias, version in model.aliases.items()},
            "versions": {
                str(version.version): {
                    "tags": {key: named(value) for key, value in version.tags.items()},
                    "description": named(version.description),
                    "run": names.get(version.run_id),
                }
                for version in store.client.search_model_versions(f"name = '{model.name}'")
            },
        }
        for model in store.client.search_registered_models()
    }


def run_tree(store) -> dict[str, dict]:
    """Each run by name: its entry point, parent's name, params (but how it ran: the executor and the
    number of workers), artifact paths, dataset inputs (name, source, digest, context)."""
    runs = store.runs()
    names = {run.info.run_id: run.info.run_name for run in runs}
    tree = {}
    for run in runs:
        artifacts, folders = [], [""]
        while folders:
            for item in store.client.list_artifacts(run.info.run_id, folders.pop() or None):
                (folders if item.is_dir else artifacts).append(item.path)
        tree[run.info.run_name] = {
            "entry point": run.data.tags.get("mlflow.project.entryPoint"),
            "parent": names.get(run.data.tags.get("mlflow.parentRunId")),
            "params": {
                key: RUN_ID.sub("<run id>", value.replace(str(store.folder), "<store>"))
                for key, value in run.data.params.items()
                if key not in ("executor", "max_parallel")
            },
            "artifacts": sorted(artifacts),
            "dataset inputs": sorted(
                (
                    item.dataset.name,
                    RUN_ID.sub(
                        "<run id>",
                        json.loads(item.dataset.source)["uri"].replace(str(store.folder), "<store>"),
                    ),
                    item.dataset.digest,
                    sorted((tag.key, tag.value) for tag in item.tags),
                )
                for item in run.inputs.dataset_inputs
            ),
            "metrics": run.data.metrics,
            "histories": {
                key: [(m.step, m.value) for m in store.client.get_metric_history(run.info.run_id, key)]
                for key in run.data.metrics
            },
            "tags": tags_of(run, store),
        }
    return tree
