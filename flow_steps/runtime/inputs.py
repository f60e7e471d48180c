"""A step's input files: a local path or an artifact URI, read or refused in one line naming the parameter,
and logged as an MLflow dataset input whose source is the URI it came from."""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.data.dataset_source import DatasetSource
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flow_steps.config.errors import SourceError, one_line
from flow_steps.config.names import TAG_TICKER
from flow_steps.data.ingest import validate_prepared


def input_file(path: str, parameter: str) -> Path:
    """`path` as a Path, refused unless it is a file; `parameter` names the option that gave it."""
    file = Path(path)
    if not file.is_file():
        raise SourceError(f"{parameter} '{path}' is not a file")
    return file


def read_prepared(path: str, parameter: str) -> pd.DataFrame:
    """The prepared prices transform_data wrote, checked."""
    file = input_file(path, parameter)
    return validate_prepared(pd.read_csv(file, dtype=str), file.name)


RUN_ARTIFACT_URI = re.compile(r"/(?P<run_id>[0-9a-f]{32})/artifacts/")


def log_prices_input(prices: pd.DataFrame, parameter: str, local_path: str) -> None:
    """Log the prices a step read as an MLflow dataset input: its source is the URI they came from.

    Under `mlflow run` a path parameter is logged as the artifact URI and handed to the step as a
    downloaded file; the dataset names that URI, and the ticker its transform run recorded.
    """
    source = mlflow.active_run().data.params.get(parameter, local_path)  # as read when the run started
    ticker = Path(local_path).stem if parameter == "dataset_stock_csv" else _ticker_of(source)
    dataset = mlflow.data.from_pandas(
        prices, source=ArtifactSource(source), name=f"{ticker} prices" if ticker else "prices"
    )
    mlflow.log_input(dataset, context="training" if parameter == "stock_data" else "raw")


class ArtifactSource(DatasetSource):
    """A dataset's source: the artifact URI (or path) it was read from, `mlflow-artifacts:/` included.

    MLflow resolves local and cloud URIs to sources of its own but not a tracking server's proxied
    `mlflow-artifacts:/` URIs; this one names any of them and downloads it with MLflow.
    """

    def __init__(self, uri: str):
        self.uri = uri

    @staticmethod
    def _get_source_type() -> str:
        return "artifact"

    def load(self, dst_path: str | None = None) -> str:
        return mlflow.artifacts.download_artifacts(self.uri, dst_path=dst_path)

    @staticmethod
    def _can_resolve(raw_source: object) -> bool:
        return False  # made explicitly, never guessed from a string

    @classmethod
    def _resolve(cls, raw_source: str) -> ArtifactSource:
        return cls(raw_source)

    def to_dict(self) -> dict[str, str]:
        return {"uri": self.uri}

    @classmethod
    def from_dict(cls, source_dict: dict) -> ArtifactSource:
        return cls(source_dict["uri"])


def _ticker_of(source: str) -> str | None:
    """The ticker tag of the run whose artifact `source` is, if any."""
    match = RUN_ARTIFACT_URI.search(source)
    if not match:
        return None
    try:
        return MlflowClient().get_run(match["run_id"]).data.tags.get(TAG_TICKER)
    except MlflowException:
        return None


# runs:/, models:/, mlflow-artifacts:/, file:, s3:// ...
URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")


def local_input(path_or_uri: str) -> str:
    """A step's input file: a local path as it is, an artifact URI (what a step prints) downloaded first.

    `mlflow run` downloads URI parameters of type path itself; run alone, a step does it here, so
    `python -m flow_steps.transform_data --dataset-stock-csv <the URI download_raw_data printed>` works.
    """
    if not URI_SCHEME.match(path_or_uri) or Path(path_or_uri).exists():
        return path_or_uri
    try:
        return mlflow.artifacts.download_artifacts(artifact_uri=path_or_uri)
    except (MlflowException, OSError) as error:
        raise SourceError(f"could not download '{path_or_uri}': {one_line(error)}") from error
