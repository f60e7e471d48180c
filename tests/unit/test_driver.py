"""The driver's reuse rules, without running anything (the look-up on an in-process sqlite store)."""

from pathlib import Path

import pytest
from mlflow.entities import Param, Run, RunData, RunInfo, RunTag

from flow_steps.config.entry_points import BY_ENTRY_POINT
from flow_steps.config.names import TAG_RAW_SHA256
from flow_steps.data.reading import sha256_bytes
from flow_steps.orchestration import reuse
from flow_steps.orchestration.reuse import (
    download_reuse_tags,
    find_reusable,
    reuse_filter,
    same_inputs,
    searched_params,
)


def test_reuse_filter_names_status_entry_point_code_version_tags_and_the_first_four_params():
    params = {
        "on_suspect_move": "refuse",
        "max_row_limit": "300",
        "calendar": "XNYS",
        "dataset_stock_csv": "file:///a/b.csv",
        "max_gap_days": "10",
        "date_format": "auto",
        "max_gap_sessions": "3",
    }
    assert reuse_filter("transform_data", params, "abc123", {}) == (
        "attributes.status = 'FINISHED' and tags.`mlflow.project.entryPoint` = 'transform_data' "
        "and tags.code_version = 'abc123' and params.dataset_stock_csv = 'file:///a/b.csv' "
        "and params.max_row_limit = '300' and params.date_format = 'auto' and params.calendar = 'XNYS'"
    )
    assert reuse_filter("download_raw_data", {"company_abbreviation": "IBM"}, "v", {"raw_sha256": "ab"}) == (
        "attributes.status = 'FINISHED' and tags.`mlflow.project.entryPoint` = 'download_raw_data' "
        "and tags.code_version = 'v' and tags.raw_sha256 = 'ab' and params.company_abbreviation = 'IBM'"
    )


TRAIN_VALUES = {name: "1" for name in ("patience", "seed", "batch_size", "epochs", "window", "lstm_units")}


@pytest.mark.parametrize(
    "tags, searched",
    [
        (0, ["stock_data", "lstm_units", "window", "epochs"]),  # 7 relations: runs, 2 tags, 4 params
        (1, ["stock_data", "lstm_units", "window"]),
        (2, ["stock_data", "lstm_units"]),
        (3, ["stock_data"]),
        (4, ["stock_data"]),  # never fewer than the input
    ],
)
def test_the_search_names_the_input_first_and_stays_within_seven_relations(tags, searched):
    params = {"stock_data": "s3://a/prices.csv", **TRAIN_VALUES}
    assert searched_params("train_model", params, {f"tag{n}": "x" for n in range(tags)}) == searched


def test_each_steps_input_is_searched_first():
    inputs = {
        "download_raw_data": "company_abbreviation",
        "transform_data": "dataset_stock_csv",
        "train_model": "stock_data",
        "register_model": "model_uri",
    }
    for step, name in inputs.items():
        everything = {param.name: "1" for param in BY_ENTRY_POINT[step].params}
        assert searched_params(step, everything, {})[0] == name


def run_with(params: dict[str, str], tags: dict[str, str] | None = None) -> Run:
    data = RunData(
        params=[Param(name, value) for name, value in params.items()],
        tags=[RunTag(name, value) for name, value in (tags or {}).items()],
    )
    return Run(RunInfo("r", "0", "u", "FINISHED", 0, 1, "active", run_name="r"), data)


WANTED = {
    "stock_data": "s3://a/prices.csv",
    **{"lstm_units": "50", "window": "60", "epochs": "5", "batch_size": "32"},  # searched
    "seed": "42",  # compared in Python
}


@pytest.mark.parametrize(
    "params, tags, same",
    [
        (WANTED, {}, True),
        ({**WANTED, "extra": "1"}, {}, True),  # a param the look-up does not ask about
        ({**WANTED, "batch_size": "64"}, {}, False),
        ({**WANTED, "epochs": "5.0"}, {}, False),  # compared as logged text, as MLflow's filter does
        ({k: v for k, v in WANTED.items() if k != "epochs"}, {}, False),
    ],
)
def test_same_inputs_compares_every_param_asked_for(params, tags, same):
    assert same_inputs(run_with(params, tags), WANTED, {}) is same


def test_same_inputs_compares_every_tag_asked_for():
    assert same_inputs(run_with(WANTED, {"raw_sha256": "ab"}), WANTED, {"raw_sha256": "ab"})
    assert not same_inputs(run_with(WANTED, {"raw_sha256": "cd"}), WANTED, {"raw_sha256": "ab"})
    assert not same_inputs(run_with(WANTED), WANTED, {"raw_sha256": "ab"})


def train_run(tracking, started: int, version: str = "v1", status: str = "FINISHED", **changed: str) -> str:
    """A finished-looking train_model run in the test store, started at `started` ms."""
    run = tracking.client.create_run(tracking.experiment_id, start_time=started)
    tracking.client.log_batch(
        run.info.run_id,
        params=[Param(name, value) for name, value in {**WANTED, **changed}.items()],
        tags=[RunTag("mlflow.project.entryPoint", "train_model"), RunTag("code_version", version)],
    )
    tracking.client.set_terminated(run.info.run_id, status=status, end_time=started + 1)
    return run.info.run_id


def test_find_reusable_returns_the_newest_exact_match_across_pages(tracking, monkeypatch):
    """Near misses newer than the match fill more than one page: the look-up reads on until it finds it;
    another code version, a FAILED run and another input never count."""
    monkeypatch.setattr(reuse, "REUSE_PAGE_SIZE", 2)
    older = train_run(tracking, 1_000)
    match = train_run(tracking, 2_000)
    for started, seed in ((3_000, "1"), (4_000, "2"), (5_000, "3")):  # found by the search, not the same
        train_run(tracking, started, seed=seed)
    train_run(tracking, 6_000, version="v2")
    train_run(tracking, 7_000, status="FAILED")
    train_run(tracking, 8_000, stock_data="s3://b/prices.csv")

    def look_up(params: dict[str, str], version: str = "v1") -> str | None:
        found = find_reusable(tracking.client, tracking.experiment_id, "train_model", params, version, {})
        return found.info.run_id if found else None

    assert look_up(WANTED) == match != older
    assert look_up({**WANTED, "seed": "2"}) is not None
    assert look_up({**WANTED, "seed": "4"}) is None
    assert look_up({**WANTED, "batch_size": "8"}) is None
    assert look_up(WANTED, version="v3") is None
    assert look_up({**WANTED, "stock_data": "s3://a/it's.csv"}) is None  # not expressible: run it
    assert look_up({**WANTED, "epochs": "5'"}) is None


def test_sample_download_is_reusable_without_extra_tags():
    assert download_reuse_tags("sample") == {}


def test_local_file_download_is_reused_only_for_the_same_content(tmp_path: Path):
    prices = tmp_path / "prices.csv"
    prices.write_text("Date,Close\n2020-01-01,1\n")
    assert download_reuse_tags(str(prices)) == {TAG_RAW_SHA256: sha256_bytes(prices.read_bytes())}
    prices.write_text("Date,Close\n2020-01-01,2\n")
    assert download_reuse_tags(str(prices))[TAG_RAW_SHA256] == sha256_bytes(prices.read_bytes())


@pytest.mark.parametrize("source", ["https://example.test/prices.csv", "/no/such/file.csv"])
def test_other_sources_are_fetched_again(source):
    assert download_reuse_tags(source) is None
