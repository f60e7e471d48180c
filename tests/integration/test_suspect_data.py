"""Prices that parse but lie, through `python main.py` and its steps: read right, refused, or named."""

from __future__ import annotations

import exchange_calendars
import pandas as pd
import pytest
from click.testing import CliRunner

from flow_steps import download_raw_data, transform_data
from flow_steps.config.names import (
    DOWNLOAD_STEP,
    TAG_ERROR,
    TRAIN_STEP,
    TRANSFORM_STEP,
    TRANSFORMED_DATA_PATH,
)
from flow_steps.data.sources import SAMPLE_FILE
from main import cli as main_cli
from tests.conftest import EXPERIMENT, TINY_PARAMS, cli_options, python_main

# One worker for the whole file: its module-scoped fixture is set up once.
pytestmark = [pytest.mark.xdist_group("test_suspect_data")]


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    """The bundled sample as its file has it (oldest first), every column a string."""
    return pd.read_csv(SAMPLE_FILE, dtype=str)


def with_dates(frame: pd.DataFrame, fmt: str) -> pd.DataFrame:
    return frame.assign(Date=pd.to_datetime(frame["Date"]).dt.strftime(fmt))


@pytest.fixture
def in_process(tracking, monkeypatch):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", EXPERIMENT)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    return CliRunner()


def download_and_transform(tracking, in_process, path, *checks: str) -> None:
    """The two steps that read the file, run in this process: a file read right needs no training."""
    result = in_process.invoke(download_raw_data.cli, ["--data-source", str(path), *checks])
    assert result.exit_code == 0, result.output
    [download] = [run for run in tracking.runs_of_name(DOWNLOAD_STEP) if run.info.status == "FINISHED"]
    raw = tracking.client.download_artifacts(download.info.run_id, "raw-data/MSFT.csv")
    options = ["--dataset-stock-csv", raw, "--max-row-limit", TINY_PARAMS["max_row_limit"], *checks]
    result = in_process.invoke(transform_data.cli, options)
    assert result.exit_code == 0, result.output


def prepared_prices(tracking) -> pd.DataFrame:
    [transform] = tracking.runs_of_name(TRANSFORM_STEP)
    return pd.read_csv(tracking.client.download_artifacts(transform.info.run_id, TRANSFORMED_DATA_PATH))


def assert_refused(tracking, result, message: str) -> None:
    """Exit 1, the message in the failed download run's and the parent's error tags, no training."""
    assert result.exit_code == 1, result.output
    [download] = tracking.runs_of(DOWNLOAD_STEP)
    assert download.info.status == "FAILED" and message in download.data.tags[TAG_ERROR]
    [parent] = tracking.parents()
    assert parent.info.status == "FAILED" and message in parent.data.tags[TAG_ERROR]
    assert not [run for run in tracking.runs_of(TRAIN_STEP) if run.info.status == "FINISHED"]


def test_day_first_dates_are_read_as_written(tracking, in_process, sample):
    path = tracking.folder / "day-first.csv"
    with_dates(sample, "%d/%m/%Y").to_csv(path, index=False)
    download_and_transform(tracking, in_process, path)
    [download] = tracking.runs_of_name(DOWNLOAD_STEP)
    assert download.data.tags["date_format_resolved"] == "%d/%m/%Y"
    assert (download.data.tags["raw_first_date"], download.data.tags["raw_last_date"]) == (
        "2000-03-01",
        "2013-03-01",
    )
    truth = pd.to_datetime(sample["Date"]).dt.strftime("%Y-%m-%d").tail(int(TINY_PARAMS["max_row_limit"]))
    assert prepared_prices(tracking)["Date"].tolist() == truth.tolist()
    # The transform run reads the raw file as written too, and records what the checks found on it.
    [transform] = tracking.runs_of_name(TRANSFORM_STEP)
    assert transform.data.tags["date_format_resolved"] == "%d/%m/%Y"
    whole_series = pd.to_datetime(sample["Date"])  # gaps are measured before max_row_limit
    assert transform.data.metrics["largest_gap_days"] == whole_series.diff().dt.days.max()
    assert transform.data.metrics["missing_rows_dropped"] == 0


def test_missing_cells_below_the_limit_are_dropped_and_counted(tracking, in_process, sample):
    path = tracking.folder / "holes.csv"
    holes = sample.index[-200::50]  # 4 rows inside the kept 300, far below 5% of the file
    sample.assign(**{"Adj Close": sample["Adj Close"].where(~sample.index.isin(holes), "n/a")}).to_csv(
        path, index=False
    )
    download_and_transform(tracking, in_process, path)
    [transform] = tracking.runs_of_name(TRANSFORM_STEP)
    assert transform.data.metrics["missing_rows_dropped"] == len(holes)
    assert not set(prepared_prices(tracking)["Date"]) & set(sample.loc[holes, "Date"])


def test_dates_that_read_two_ways_are_refused_then_read_with_date_format(tracking, in_process, sample):
    early_days = sample[pd.to_datetime(sample["Date"]).dt.day <= 12]  # every date reads both ways
    path = tracking.folder / "ambiguous.csv"
    with_dates(early_days, "%d/%m/%Y").to_csv(path, index=False)
    options = ["--data-source", str(path), *cli_options(TINY_PARAMS)]
    assert_refused(tracking, in_process.invoke(main_cli, options), "has dates that read two ways")

    options = ["--date-format", "%d/%m/%Y", "--max-gap-sessions", "20"]  # days 13 to 31 of each month
    download_and_transform(tracking, in_process, path, *options)
    truth = pd.to_datetime(early_days["Date"]).dt.strftime("%Y-%m-%d").tail(int(TINY_PARAMS["max_row_limit"]))
    assert prepared_prices(tracking)["Date"].tolist() == truth.tolist()


def test_two_missing_years_are_refused_naming_both_dates(tracking, in_process, sample):
    years = pd.to_datetime(sample["Date"]).dt.year
    path = tracking.folder / "gap.csv"
    sample[(years < 2005) | (years > 2006)].to_csv(path, index=False)
    result = in_process.invoke(main_cli, ["--data-source", str(path), *cli_options(TINY_PARAMS)])
    missing = len(exchange_calendars.get_calendar("XNYS", start="2005-01-01", end="2007-01-02").sessions)
    message = f"no prices for {missing} sessions of XNYS between 2004-12-31 and 2007-01-03 (more than "
    assert_refused(tracking, result, message + "max_gap_sessions=10)")


def test_semicolon_file_with_decimal_commas_is_read(tracking, in_process, sample):
    path = tracking.folder / "semicolon.csv"
    sample.map(lambda cell: cell.replace(".", ",")).assign(Date=sample["Date"]).to_csv(
        path, sep=";", index=False
    )
    download_and_transform(tracking, in_process, path)
    expected = sample["Adj Close"].astype(float).tail(int(TINY_PARAMS["max_row_limit"])).tolist()
    assert prepared_prices(tracking)["Close"].tolist() == expected


@pytest.fixture
def unadjusted(tracking, sample):
    """The sample without its adjusted columns, through 2003: its Close halves overnight at the 2:1 split
    of 2003-02-18, which the last 300 days (the tiny pipeline's) include."""
    path = tracking.folder / "unadjusted.csv"
    through_2003 = sample[pd.to_datetime(sample["Date"]).dt.year <= 2003]
    through_2003[["Date", "Open", "High", "Low", "Close", "Volume"]].to_csv(path, index=False)
    return path


def test_an_unadjusted_split_is_warned_about_and_tagged(tracking, unadjusted):
    result = python_main(tracking, "--data-source", str(unadjusted), *cli_options(TINY_PARAMS))
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line and "moved -" in line]
    assert len(warnings) == 2, result.stderr[-3000:]  # download and transform, one line each
    assert "on 2003-02-18 (48.3 -> 24.96, -48.3%)" in warnings[0] and "unadjusted split" in warnings[0]
    [parent] = tracking.parents()
    [download], [transform] = tracking.runs_of(DOWNLOAD_STEP), tracking.runs_of(TRANSFORM_STEP)
    [train] = tracking.runs_of(TRAIN_STEP)
    for run in (download, transform, train, parent):
        assert run.data.tags["suspect_moves"].startswith("2003-02-18 (48.3 -> 24.96, -48.3%)")
    assert download.data.metrics["largest_daily_move"] == pytest.approx(1 - 24.96 / 48.3)
    assert train.info.status == "FINISHED"


def test_an_unadjusted_split_is_refused_with_on_suspect_move_fail(tracking, in_process, unadjusted):
    options = ["--data-source", str(unadjusted), "--on-suspect-move", "fail", *cli_options(TINY_PARAMS)]
    assert_refused(tracking, in_process.invoke(main_cli, options), "moved -48.3% in one day on 2003-02-18")


def test_a_missing_week_and_a_saturday_price_are_named_on_every_run_that_used_them(tracking, sample):
    """Session checks (calendar XNYS, the default): a week without prices and a price dated on a
    Saturday, both inside the 300 days the tiny pipeline trains on, are warned about and tagged."""
    dates = pd.to_datetime(sample["Date"])
    week = (dates >= "2012-10-08") & (dates <= "2012-10-12")
    saturday = sample[dates == "2012-11-09"].assign(Date="2012-11-10")
    path = tracking.folder / "holes.csv"
    pd.concat([sample[~week], saturday]).to_csv(path, index=False)
    result = python_main(tracking, "--data-source", str(path), *cli_options(TINY_PARAMS))
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    hole = "No prices for 5 sessions of XNYS between 2012-10-05 and 2012-10-15"
    holes = [line for line in warnings if hole in line]
    closed = [line for line in warnings if "1 price dated on days XNYS was closed: 2012-11-10" in line]
    assert len(holes) == 2 and len(closed) == 2, "\n".join(warnings)  # download and transform each
    [parent] = tracking.parents()
    [download], [transform] = tracking.runs_of(DOWNLOAD_STEP), tracking.runs_of(TRANSFORM_STEP)
    [train] = tracking.runs_of(TRAIN_STEP)
    for run in (download, transform, train, parent):
        assert run.data.tags["session_holes"] == "5 sessions between 2012-10-05 and 2012-10-15", run.info
        assert run.data.tags["non_session_dates"] == "1 price dated on days XNYS was closed: 2012-11-10"
    assert (
        transform.data.metrics["largest_gap_sessions"] == 5
        and transform.data.metrics["missing_sessions"] == 5
    )
    assert transform.data.metrics["non_session_prices"] == 1
    prepared = pd.read_csv(tracking.client.download_artifacts(transform.info.run_id, TRANSFORMED_DATA_PATH))
    assert "2012-11-10" in prepared["Date"].tolist()  # named, kept
