"""Packaging the served model: the pyfunc logged as code, with its Keras weights, calibrated interval
multipliers, signature, input example and pinned requirements."""

from __future__ import annotations

import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from flow_steps.config.names import (
    DAYS_AHEAD_COLUMN,
    FORECAST_COLUMN,
    HORIZON_PARAM,
    MODEL_ARTIFACT,
    PRICE_COLUMN,
)
from flow_steps.model.adaptive import ANSWER_INTERVAL_COLUMNS
from flow_steps.model.pyfunc import (
    KERAS_ARTIFACT,
    RETURN_SCALE_CONFIG,
    SCORES_CONFIG,
    TRAINED_THROUGH_CONFIG,
    WINDOW_CONFIG,
    multiplier_config,
)
from flow_steps.training.lstm import FittedLstm

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# What the logged model ships, as paths in the package: the model/ folder and the two modules of names
# and errors it imports. tests/unit/test_structure.py checks that serving imports nothing else of ours.
SERVED_CODE = (
    "__init__.py",
    "config/__init__.py",
    "config/names.py",
    "config/errors.py",
    "config/secrets.py",
    "model",
)


def served_code_files() -> list[str]:
    """SERVED_CODE with its folder expanded: the package's files the logged model ships."""
    files = []
    for name in SERVED_CODE:
        path = PACKAGE_DIR / name
        found = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        files += [
            item.relative_to(PACKAGE_DIR).as_posix() for item in found if "__pycache__" not in item.parts
        ]
    return files


# What serving imports; TensorFlow is whichever build is installed (tensorflow-cpu here, tensorflow on GPUs).
MODEL_REQUIREMENTS = ("mlflow", ("tensorflow-cpu", "tensorflow"), "keras", "numpy", "pandas", "cloudpickle")


def installed_pin(names: str | tuple[str, ...]) -> str:
    """`name==version` of the first of `names` that is installed."""
    for name in (names,) if isinstance(names, str) else names:
        try:
            return f"{name}=={version(name)}"
        except PackageNotFoundError:
            continue
    raise PackageNotFoundError(f"none of {names} is installed")


def model_signature() -> ModelSignature:
    """Chronological closes in; one row per trading day ahead out (forecast and interval bounds);
    `horizon` (default 1) as a parameter."""
    outputs = [ColSpec("long", DAYS_AHEAD_COLUMN), ColSpec("double", FORECAST_COLUMN)]
    return ModelSignature(
        inputs=Schema([ColSpec("double", PRICE_COLUMN)]),
        outputs=Schema([*outputs, *(ColSpec("double", column) for column in ANSWER_INTERVAL_COLUMNS)]),
        params=ParamSchema([ParamSpec(HORIZON_PARAM, "long", 1)]),
    )


def log_model(
    lstm: FittedLstm,
    multipliers: dict[int, float],
    prices: pd.DataFrame,
    window: int,
    scores: np.ndarray | None = None,
    trained_through: str | None = None,
) -> str:
    """Log the pyfunc model as code, with its Keras weights, config (window, return scale, calibrated
    interval multipliers, and the calibration scores and last training date its adaptive intervals
    start from), signature and input example.

    Returns the logged model's id (MLflow 3 logged models carry their own metrics).
    """
    input_example = prices[[PRICE_COLUMN]].iloc[-window:].reset_index(drop=True)
    with tempfile.TemporaryDirectory() as folder:
        keras_path = Path(folder) / "lstm.keras"
        lstm.keras_model.save(keras_path)
        code_dir = Path(folder) / "code" / PACKAGE_DIR.name
        for name in served_code_files():
            (code_dir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PACKAGE_DIR / name, code_dir / name)
        logged = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=str(code_dir / "model" / "from_code.py"),
            model_config={
                WINDOW_CONFIG: window,
                RETURN_SCALE_CONFIG: lstm.scaler.scale,
                **{multiplier_config(level): value for level, value in multipliers.items()},
                **({} if scores is None else {SCORES_CONFIG: [float(value) for value in scores]}),
                **({} if trained_through is None else {TRAINED_THROUGH_CONFIG: trained_through}),
            },
            artifacts={KERAS_ARTIFACT: str(keras_path)},
            code_paths=[str(code_dir)],
            signature=model_signature(),
            input_example=input_example,
            pip_requirements=[installed_pin(name) for name in MODEL_REQUIREMENTS],
        )
    return logged.model_id
