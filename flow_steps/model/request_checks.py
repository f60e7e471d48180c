"""What the served model checks in a request: the closes it is given and the `horizon` parameter."""

from __future__ import annotations

import numpy as np
import pandas as pd

from flow_steps.config.errors import DataValidationError
from flow_steps.config.names import HORIZON_PARAM, MAX_HORIZON, PRICE_COLUMN


def closes_from_input(model_input: pd.DataFrame, window: int) -> np.ndarray:
    """The chronological closes a served model was given, checked: column, length, values."""
    if not isinstance(model_input, pd.DataFrame) or PRICE_COLUMN not in model_input.columns:
        found = ", ".join(map(str, getattr(model_input, "columns", []))) or "none"
        raise DataValidationError(f"input needs a '{PRICE_COLUMN}' column; found columns: {found}")
    values = pd.to_numeric(model_input[PRICE_COLUMN], errors="coerce").to_numpy(dtype=float)
    if len(values) < window:
        raise DataValidationError(
            f"input has {len(values)} rows of '{PRICE_COLUMN}', the model needs at least {window}"
        )
    if not np.all(np.isfinite(values)):
        position = int(np.flatnonzero(~np.isfinite(values))[0])
        given = model_input[PRICE_COLUMN].iloc[position]
        if pd.isna(given):
            problem = "is missing"
        elif isinstance(given, (int, float, np.number)):
            problem = f"is not finite: {float(given):g}"
        else:
            problem = f"is not a number: {given!r}"
        raise DataValidationError(f"'{PRICE_COLUMN}' row {position} {problem}")
    if np.any(values <= 0):
        position = int(np.flatnonzero(values <= 0)[0])
        raise DataValidationError(f"'{PRICE_COLUMN}' row {position} is not positive: {values[position]:g}")
    return values


def horizon_from_params(params: dict | None) -> int:
    """The `horizon` request parameter (default 1), refused outside 1..MAX_HORIZON."""
    value = (params or {}).get(HORIZON_PARAM, 1)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise DataValidationError(f"{HORIZON_PARAM} must be a whole number of days, got {value!r}")
    if not 1 <= value <= MAX_HORIZON:
        raise DataValidationError(f"{HORIZON_PARAM} must be between 1 and {MAX_HORIZON}, got {value}")
    return int(value)
