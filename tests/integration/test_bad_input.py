"""Bad input through the real steps: a one-line error, a non-zero exit, FAILED runs, nothing else harmed."""

from __future__ import annotations

import socket
import sys

import pytest
from click.testing import CliRunner

from flow_steps import download_raw_data, train_model
from flow_steps.config.names import DOWNLOAD_STEP, TAG_ERROR, TRAIN_STEP, TRANSFORM_STEP
from main import cli as main_cli
from tests.conftest import EXPERIMENT, TINY_PARAMS, cli_options, python_main, run_command
from tests.support.price_server import HANG

GOOD_ROWS = "\n".join(
    f"2020-{month:02d}-{day:02d},{100 + month + day / 10:.2f}" for month in (1, 2) for day in range(1, 29)
)

BAD_FILES = {
    "no date column": ("When,Close\n2020-01-01,1\n", "no date column (expected one of Date"),
    "unparseable date": (
        "Date,Close\n2020-01-01,1\n2020-13-45,2\n",
        "date that does not parse with ISO8601, the format of its other dates: '2020-13-45' (data row 2)",
    ),
    "no price column": ("Date,Open,Volume\n2020-01-01,1,5\n", "no price column (expected one of Adj Close"),
    "empty file": ("", "is empty"),
    "html page": ("<!DOCTYPE html><html><body>Rate limited</body></html>", "is an HTML or XML page, not CSV"),
    "json error": ('{"quandl_error": {"code": "QELx01"}}', "is JSON, not CSV"),
    "non-numeric price": (
        "Date,Close\n2020-01-01,1\n2020-01-02,1.2.3\n",
        "value that is not a number: '1.2.3' (data row 2)",
    ),
    "non-positive price": (
        "Date,Close\n2020-01-01,1\n2020-01-02,-3\n",
        "non-positive price -3 on 2020-01-02",
    ),
    "conflicting duplicates": (
        "Date,Close\n2020-01-01,1\n2020-01-02,2\n2020-01-02,2.5\n",
        "2020-01-02 appears more than once with different 'Close' values: 2, 2.5",
    ),
}


def too_many_missing() -> str:
    rows = GOOD_ROWS.splitlines()
    for position in range(0, len(rows), 10):  # 6 of 56 rows: 11% missing
        rows[position] = rows[position].split(",")[0] + ",n/a"
    return "Date,Close\n" + "\n".join(rows) + "\n"


BAD_FILES["too many missing"] = (too_many_missing(), "6 of 56 rows (11%) miss a date or a 'Close' value")


@pytest.fixture
def in_process(tracking, monkeypatch):
    """Run step CLIs in this process (click's runner) against the temporary store."""
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return CliRunner()


@pytest.fixture
def earlier_run(tracking, in_process):
    """A finished sample download that every failure must leave as it was."""
    result = in_process.invoke(download_raw_data.cli, [])
    assert result.exit_code == 0, result.output
    [run] = tracking.runs()
    return run


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_price_file_fails_the_download_step(tracking, in_process, earlier_run, caplog, case):
    content, message = BAD_FILES[case]
    path = tracking.folder / "prices.csv"
    path.write_text(content)
    result = in_process.invoke(download_raw_data.cli, ["--data-source", str(path)])

    assert result.exit_code == 1
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0] and "\n" not in errors[0]
    failed = [run for run in tracking.runs() if run.info.run_id != earlier_run.info.run_id]
    assert [run.info.status for run in failed] == ["FAILED"]
    assert message in failed[0].data.tags[TAG_ERROR]
    assert_untouched(tracking, earlier_run)


def test_the_step_prints_one_error_line_and_exits_1(tracking):
    path = tracking.folder / "page.csv"
    path.write_text(BAD_FILES["html page"][0])
    result = run_command(
        [sys.executable, "-m", "flow_steps.download_raw_data", "--data-source", str(path)], tracking.env
    )
    assert result.returncode == 1
    [error] = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert (
        "download_raw_data failed: file://" in error and "page.csv is an HTML or XML page, not CSV" in error
    )
    [run] = tracking.runs()
    assert run.info.status == "FAILED"


def test_http_failure_fails_the_pipeline_and_its_parent(tracking, earlier_run, price_server):
    env = {**tracking.env, "QUANDL_API_BASE": price_server.api_base, "PRICE_SOURCE_TIMEOUT": "5"}
    tracking.env = env
    result = python_main(
        tracking, "--data-source", "quandl", "--quandl-database", "WIKI", *cli_options(TINY_PARAMS)
    )

    assert result.returncode == 1
    assert "Quandl dataset WIKI/MSFT is retired (410 Gone)" in result.stderr.splitlines()[-1]
    [parent] = [run for run in tracking.parents() if run.data.params.get("data_source") == "quandl"]
    assert parent.info.run_name.startswith("MSFT data_source=quandl max_row_limit=300")
    assert parent.info.status == "FAILED" and "410 Gone" in parent.data.tags[TAG_ERROR]
    downloads = [run for run in tracking.runs_of(DOWNLOAD_STEP)]
    assert [run.info.status for run in downloads] == ["FAILED"]
    assert tracking.runs_of(TRANSFORM_STEP) == [] and tracking.runs_of(TRAIN_STEP) == []
    assert_untouched(tracking, earlier_run)


SHORT_MESSAGE = "56 rows of prices, but window=60 and test_fraction=0.2 need at least"


def test_too_few_rows_fail_before_training_and_say_what_to_change(tracking):
    path = tracking.folder / "short.csv"
    path.write_text("Date,Close\n" + GOOD_ROWS + "\n")  # 56 rows
    result = python_main(tracking, "--data-source", str(path), "--window", "60")

    assert result.returncode == 1
    assert SHORT_MESSAGE in result.stderr.splitlines()[-1]
    assert "lower window, raise max_row_limit" in result.stderr.splitlines()[-1]
    assert tracking.runs_of(TRAIN_STEP) == []  # refused by the driver before the step starts
    [parent] = tracking.parents()
    assert parent.info.status == "FAILED" and SHORT_MESSAGE in parent.data.tags[TAG_ERROR]


def test_the_train_step_alone_refuses_too_few_rows_the_same_way(tracking, in_process):
    path = tracking.folder / "short.csv"
    path.write_text("Date,Close\n" + GOOD_ROWS + "\n")
    result = in_process.invoke(train_model.cli, ["--stock-data", str(path), "--window", "60"])

    assert result.exit_code == 1
    [train] = tracking.runs_of_name(TRAIN_STEP)
    assert train.info.status == "FAILED" and SHORT_MESSAGE in train.data.tags[TAG_ERROR]
    assert "test_rmse" not in train.data.metrics


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--lstm-units", "0"], "Invalid value for '--lstm-units': 0 is not in the range x>=1"),
        (["--window", "0"], "Invalid value for '--window'"),
        (["--epochs", "0"], "Invalid value for '--epochs'"),
        (["--batch-size", "0"], "Invalid value for '--batch-size'"),
        (["--test-fraction", "0.7"], "Invalid value for '--test-fraction': 0.7 is not in the range 0<x<=0.5"),
        (["--test-fraction", "0"], "Invalid value for '--test-fraction'"),
        (
            ["--data-source", "nasdaq"],
            "is not 'sample', 'quandl', 'tiingo', 'yahoo', a URL or an existing CSV file",
        ),
        (["--data-source", "https://x.test/a.csv?api_key=s3cr3tvalue"], "contains a key"),
        (["--calendar", "NYSEE"], "'--calendar': calendar='NYSEE' is not an exchange calendar (XNYS New"),
        (["--calendar", "NYSEE"], 'list the codes with: python -c "import exchange_calendars'),
    ],
)
def test_invalid_parameters_are_refused_before_anything_runs(tracking, in_process, options, message):
    result = in_process.invoke(main_cli, options)
    assert result.exit_code == 2
    assert message in result.output
    assert "s3cr3tvalue" not in result.output
    assert tracking.runs() == []


def test_main_refuses_a_bad_parameter_with_exit_2(tracking):
    result = python_main(tracking, "--lstm-units", "0")
    assert result.returncode == 2
    assert "Invalid value for '--lstm-units': 0 is not in the range x>=1" in result.stderr
    assert tracking.runs() == []


def assert_untouched(tracking, before) -> None:
    after = tracking.client.get_run(before.info.run_id)
    assert after.info.status == "FINISHED"
    assert after.data.tags == before.data.tags and after.data.params == before.data.params
    assert [item.path for item in tracking.client.list_artifacts(after.info.run_id, "raw-data")] == [
        "raw-data/MSFT.csv"
    ]


HTTP_FAILURES = {
    "no key": ({"required_key": "right-key-1"}, "EOD", None, "(401, no key is set): set QUANDL_API_KEY"),
    "forbidden": ({"scripted": 403}, "EOD", "some-key-1", "(403, the key was rejected)"),
    "unknown ticker": ({}, "NOPE", None, "Quandl has no dataset NOPE/MSFT (404)"),
    "retired feed": ({}, "WIKI", None, "WIKI/MSFT is retired (410 Gone)"),
    "rate limit": ({"scripted": 429}, "EOD", None, "still answered 429 Too Many Requests after 3 retries"),
    "server error": ({"scripted": 502}, "EOD", None, "still answered server error 502 after 3 retries"),
    "timeout": ({"scripted": HANG}, "EOD", None, "did not answer within 0.5 s"),
}


@pytest.mark.parametrize("case", sorted(HTTP_FAILURES))
def test_http_failure_fails_the_download_step(tracking, in_process, earlier_run, price_server, caplog, case):
    setup, database, key, message = HTTP_FAILURES[case]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("QUANDL_API_BASE", price_server.api_base)
        env.setenv("PRICE_SOURCE_TIMEOUT", "0.5")
        env.delenv("QUANDL_API_KEY", raising=False)
        env.delenv("NASDAQ_DATA_LINK_API_KEY", raising=False)
        if key:
            env.setenv("QUANDL_API_KEY", key)
        price_server.required_key = setup.get("required_key")
        price_server.hang_seconds = 1.5
        if "scripted" in setup:
            price_server.scripted[price_server.dataset_path(f"{database}/MSFT")] = [setup["scripted"]] * 5
        result = in_process.invoke(
            download_raw_data.cli, ["--data-source", "quandl", "--quandl-database", database]
        )

    assert result.exit_code == 1
    errors = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0]
    [failed] = [run for run in tracking.runs() if run.info.run_id != earlier_run.info.run_id]
    assert failed.info.status == "FAILED" and message in failed.data.tags[TAG_ERROR]
    assert_untouched(tracking, earlier_run)


def test_refused_connection_fails_the_download_step(tracking, in_process, earlier_run, caplog, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/prices.csv"
    result = in_process.invoke(download_raw_data.cli, ["--data-source", url])
    assert result.exit_code == 1
    [error] = [record.getMessage() for record in caplog.records if record.levelname == "ERROR"]
    assert f"could not connect to {url}: connection refused" in error
    [failed] = [run for run in tracking.runs() if run.info.run_id != earlier_run.info.run_id]
    assert failed.info.status == "FAILED"
    assert_untouched(tracking, earlier_run)


@pytest.mark.timeout(300)
def test_a_step_refused_before_its_work_ends_failed_in_a_workers_process(tracking, in_process, caplog):
    """The in-process backend (a universe's worker): click refuses the option before the step's run is
    resumed; `mlflow.run` does not wait for this backend, so the backend ends the run FAILED itself."""
    import mlflow

    from flow_steps.data.sources import SAMPLE_FILE
    from flow_steps.orchestration.in_process import BACKEND
    from tests.conftest import PROJECT_ROOT

    with mlflow.start_run(run_name="worker's ticker") as parent:
        submitted = mlflow.run(
            str(PROJECT_ROOT),
            entry_point=TRAIN_STEP,
            parameters={"stock_data": str(SAMPLE_FILE), "epochs": "many"},
            experiment_id=parent.info.experiment_id,
            env_manager="local",
            backend=BACKEND,
            synchronous=False,
        )
    assert submitted.wait() is False
    step = tracking.client.get_run(submitted.run_id)
    assert step.info.status == "FAILED"
    assert step.data.tags["mlflow.parentRunId"] == parent.info.run_id
    refusal = "train_model failed: Invalid value for '--epochs': 'many' is not a valid integer range"
    assert refusal in caplog.text
