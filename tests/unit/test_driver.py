"""The driver's reuse rules, without running anything."""

from pathlib import Path

import pytest

from flow_steps.config.names import TAG_RAW_SHA256
from flow_steps.data.reading import sha256_bytes
from flow_steps.orchestration.steps import download_reuse_tags, reuse_filter


def test_reuse_filter_matches_status_entry_point_code_version_params_and_tags():
    text = reuse_filter(
        "transform_data", {"max_row_limit": "300", "dataset_stock_csv": "file:///a/b.csv"}, "abc123", {}
    )
    assert text == (
        "attributes.status = 'FINISHED' and tags.`mlflow.project.entryPoint` = 'transform_data' "
        "and tags.code_version = 'abc123' and params.dataset_stock_csv = 'file:///a/b.csv' "
        "and params.max_row_limit = '300'"
    )


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
