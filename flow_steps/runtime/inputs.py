"""A step's input files: a local path or an artifact URI, read or refused in one line naming the parameter."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from flow_steps.config.errors import SourceError
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
