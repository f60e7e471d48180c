"""The values classes: the training parameters and the price checks, as typed, frozen dataclasses.

Their fields, types and defaults are those of the declared parameters (TRAIN_PARAMS and
PRICE_CHECK_PARAMS); tests/unit/test_parameters.py holds the two against each other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from flow_steps.config.declarations import (
    BACKTEST_FOLDS,
    BATCH_SIZE,
    CALENDAR,
    DATE_FORMAT,
    EPOCHS,
    KNN_NEIGHBORS,
    LSTM_UNITS,
    MA_WINDOW,
    MAX_DAILY_MOVE,
    MAX_GAP_DAYS,
    MAX_GAP_SESSIONS,
    MIN_IMPROVEMENT,
    ON_SUSPECT_MOVE,
    PATIENCE,
    PROMOTION_ALPHA,
    SEED,
    TEST_FRACTION,
    TRAIN_PARAMS,
    VALIDATION_FRACTION,
    WINDOW,
)
from flow_steps.config.errors import PipelineError
from flow_steps.config.spec import check_values


@dataclass(frozen=True)
class TrainParams:
    """Parameters of train_model, defaults included."""

    lstm_units: int = LSTM_UNITS.default
    window: int = WINDOW.default
    epochs: int = EPOCHS.default
    batch_size: int = BATCH_SIZE.default
    test_fraction: float = TEST_FRACTION.default
    seed: int = SEED.default
    validation_fraction: float = VALIDATION_FRACTION.default
    patience: int = PATIENCE.default
    ma_window: int = MA_WINDOW.default
    knn_neighbors: int = KNN_NEIGHBORS.default
    backtest_folds: int = BACKTEST_FOLDS.default


@dataclass(frozen=True)
class PriceChecks:
    """How raw prices are checked, defaults included."""

    date_format: str = DATE_FORMAT.default
    calendar: str = CALENDAR.default
    max_gap_sessions: int = MAX_GAP_SESSIONS.default
    max_gap_days: int = MAX_GAP_DAYS.default
    max_daily_move: float = MAX_DAILY_MOVE.default
    on_suspect_move: str = ON_SUSPECT_MOVE.default


DEFAULT_CHECKS = PriceChecks()
DEFAULT_TRAIN_PARAMS = TrainParams()


@dataclass(frozen=True)
class Registration:
    """Parameters of register_model, checked when made: the registered model, the test days' share and
    the promotion rule's level and least improvement."""

    model_name: str
    test_fraction: float = TEST_FRACTION.default
    promotion_alpha: float = PROMOTION_ALPHA.default
    min_improvement: float = MIN_IMPROVEMENT.default

    def __post_init__(self) -> None:
        checked = (TEST_FRACTION, PROMOTION_ALPHA, MIN_IMPROVEMENT)
        check_values(checked, {param.name: getattr(self, param.name) for param in checked})


def check_train_params(params: TrainParams) -> None:
    """Refuse out-of-range or inconsistent training parameters before any work starts."""
    check_values(TRAIN_PARAMS, dataclasses.asdict(params))
    if params.ma_window > params.window:
        raise PipelineError(f"ma_window ({params.ma_window}) must not exceed window ({params.window})")
