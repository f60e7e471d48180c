"""The one declaration of every entry point's parameters: name, type, default, allowed range and help.

Everything else derives from it: the click options of the steps and of `main.py`, the driver's
per-step parameter lists, the range checks, `TrainParams`, and MLproject itself, which
`python -m flow_steps.parameters` writes (tests/unit/test_parameters.py fails when the two differ).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import click

from flow_steps.config.errors import PipelineError
from flow_steps.config.names import (
    DEFAULT_QUANDL_DATABASE,
    DOWNLOAD_STEP,
    FORECAST_ENTRY_POINT,
    MAIN_ENTRY_POINT,
    MAX_HORIZON,
    MONITOR_ENTRY_POINT,
    QUANDL_SOURCE,
    REGISTER_STEP,
    SAMPLE_SOURCE,
    TRAIN_STEP,
    TRANSFORM_STEP,
    UNIVERSE_ENTRY_POINT,
)

PYTHON_TYPES = {"string": str, "path": str, "int": int, "float": float, "bool": bool}


@dataclass(frozen=True)
class Param:
    """One parameter. `kind` is an MLproject type (string, path, int, float) or bool.

    `default=None` makes it required. `low`/`high` bound numbers; `low_open`/`high_open` exclude the bound.
    """

    name: str
    kind: str
    default: str | int | float | bool | None
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        """The command-line option: `max_row_limit` -> `--max-row-limit`."""
        return "--" + self.name.replace("_", "-")

    @property
    def python_type(self) -> type:
        return PYTHON_TYPES[self.kind]

    @property
    def required(self) -> bool:
        return self.default is None

    def text(self, value: object) -> str:
        """A value as MLflow logs it: `true`/`false` for booleans, str() otherwise."""
        return str(value).lower() if self.kind == "bool" else str(value)

    def click_type(self) -> click.ParamType:
        if self.kind == "path":
            return click.Path(dir_okay=False)
        if self.kind == "bool":
            return click.BOOL
        if self.choices:
            return click.Choice(self.choices)
        if self.kind in ("int", "float") and (self.low is not None or self.high is not None):
            bounded = click.IntRange if self.kind == "int" else click.FloatRange
            return bounded(self.low, self.high, min_open=self.low_open, max_open=self.high_open)
        return click.types.convert_type(self.python_type)

    def check(self, value: object) -> None:
        """Refuse a value outside the allowed range or choices, naming the parameter."""
        if self.choices and value not in self.choices:
            raise PipelineError(f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise PipelineError(f"{self.name} must be {self.range_text()}, got {value}")
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise PipelineError(f"{self.name} must be {self.range_text()}, got {value}")

    def range_text(self) -> str:
        if self.high is None:
            return f"{'above' if self.low_open else 'at least'} {self.low:g}"
        return (
            f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        )

    def mlproject_value(self) -> str:
        """The parameter as MLproject declares it."""
        if self.required:
            return self.kind
        kind = "string" if self.kind == "bool" else self.kind
        default = str(self.default).lower() if self.kind == "bool" else self.default
        if isinstance(default, str) and (default in ("", "true", "false") or not default.isalnum()):
            default = f'"{default}"'
        return f"{{type: {kind}, default: {default}}}"


# Download (and every command that fetches prices).
COMPANY_ABBREVIATION = Param(
    "company_abbreviation",
    "string",
    "MSFT",
    "Ticker symbol, e.g. MSFT; names the artifact raw-data/<TICKER>.csv.",
)
DATA_SOURCE = Param(
    "data_source",
    "string",
    SAMPLE_SOURCE,
    f"'{SAMPLE_SOURCE}' (bundled public-domain MSFT prices, offline), '{QUANDL_SOURCE}' (Quandl / Nasdaq "
    "Data Link API, key in QUANDL_API_KEY), an http(s):// URL of a CSV file, or a CSV path.",
)
QUANDL_DATABASE = Param(
    "quandl_database",
    "string",
    DEFAULT_QUANDL_DATABASE,
    f"Quandl database of the dataset <database>/<TICKER> when data_source is '{QUANDL_SOURCE}' "
    "(WIKI, the retired free feed, or EOD).",
)
# Checks of raw prices (download, transform and every command that reads prices).
AUTO_DATE_FORMAT = "auto"
WARN_ON_SUSPECT_MOVE, FAIL_ON_SUSPECT_MOVE = "warn", "fail"
DATE_FORMAT = Param(
    "date_format",
    "string",
    AUTO_DATE_FORMAT,
    "How the file writes its dates: 'auto' (ISO 8601, else the one common format that reads every row; "
    "refused when two do) or a strptime format such as %d/%m/%Y.",
)
MAX_GAP_DAYS = Param(
    "max_gap_days",
    "int",
    10,
    "Longest gap, in calendar days, allowed between consecutive prices (weekends and holidays fit).",
    low=1,
)
MAX_DAILY_MOVE = Param(
    "max_daily_move",
    "float",
    0.3,
    "One-day change (0.3 = 30%) beyond which a series without an adjusted close is suspect "
    "(an unadjusted split?).",
    low=0,
    low_open=True,
)
ON_SUSPECT_MOVE = Param(
    "on_suspect_move",
    "string",
    WARN_ON_SUSPECT_MOVE,
    "What a suspect move does: 'warn' (a warning, tags and metrics) or 'fail' (refuse the file).",
    choices=(WARN_ON_SUSPECT_MOVE, FAIL_ON_SUSPECT_MOVE),
)
PRICE_CHECK_PARAMS = (DATE_FORMAT, MAX_GAP_DAYS, MAX_DAILY_MOVE, ON_SUSPECT_MOVE)
# Transform.
DATASET_STOCK_CSV = Param(
    "dataset_stock_csv",
    "path",
    None,
    "Raw price CSV (under `mlflow run`, the download run's artifact URI, downloaded by MLflow).",
)
MAX_ROW_LIMIT = Param(
    "max_row_limit", "int", 100_000, "Keep at most this many of the most recent rows.", low=1
)
# Train.
STOCK_DATA = Param(
    "stock_data", "path", None, "Prepared prices CSV (transform_data's artifact transformed-data/prices.csv)."
)
LSTM_UNITS = Param("lstm_units", "int", 50, "Units in each of the two LSTM layers.", low=1)
WINDOW = Param("window", "int", 60, "Days of history per forecast.", low=1)
EPOCHS = Param("epochs", "int", 50, "Most training epochs (early stopping may end sooner).", low=1)
BATCH_SIZE = Param("batch_size", "int", 32, "Training batch size.", low=1)
TEST_FRACTION = Param(
    "test_fraction",
    "float",
    0.2,
    "Share of the most recent days held out as the test set (register_model: the one the model was "
    "trained with).",
    low=0,
    high=0.5,
    low_open=True,
)
SEED = Param("seed", "int", 42, "Random seed: the same parameters and seed give the same metrics.")
VALIDATION_FRACTION = Param(
    "validation_fraction",
    "float",
    0.1,
    "Share of the latest training windows kept for validation (early stopping).",
    low=0,
    high=0.5,
    low_open=True,
    high_open=True,
)
PATIENCE = Param(
    "patience",
    "int",
    5,
    "Epochs without a better validation loss before training stops (best weights are kept).",
    low=1,
)
MA_WINDOW = Param("ma_window", "int", 5, "Days averaged by the moving-average baseline.", low=1)
KNN_NEIGHBORS = Param("knn_neighbors", "int", 20, "Neighbours of the kNN baseline.", low=1)
BACKTEST_FOLDS = Param(
    "backtest_folds",
    "int",
    0,
    "Walk-forward backtest folds over the test period (0 = the single split only).",
    low=0,
)
# Register.
MODEL_URI = Param("model_uri", "string", None, "runs:/<train_model run id>/model")
MODEL_NAME = Param("model_name", "string", None, "Registered model name, e.g. stock-MSFT-lstm.")
# Forecast.
MODEL = Param(
    "model",
    "string",
    "champion",
    "A model URI (models:/stock-MSFT-lstm@champion, models:/stock-MSFT-lstm/3, runs:/<run id>/model), or "
    "'champion' / 'challenger' for that alias of the ticker's registered model stock-<TICKER>-lstm.",
)
HORIZON = Param(
    "horizon",
    "int",
    5,
    "Business days to forecast; each forecast is fed back as the newest close.",
    low=1,
    high=MAX_HORIZON,
)
OUTPUT = Param(
    "output",
    "string",
    "",
    "Also write the table to this CSV file (the run always logs it as forecast/forecast.csv).",
)
# Monitor.
WINDOW_FORECASTS = Param(
    "window_forecasts",
    "int",
    20,
    "How many of the newest logged forecasts (forecast runs) whose dates have real closes to score.",
    low=1,
)
MAX_RMSE_VS_NAIVE = Param(
    "max_rmse_vs_naive",
    "float",
    1.1,
    "The champion is degraded when its realized RMSE / the naive forecast's RMSE is above this.",
    low=0,
    low_open=True,
)
MIN_COVERAGE_80 = Param(
    "min_coverage_80",
    "float",
    0.65,
    "The champion is degraded when its 80% interval held less than this share of the realized closes.",
    low=0,
    high=1,
)
MAX_COVERAGE_80 = Param(
    "max_coverage_80",
    "float",
    0.95,
    "... or more than this share (an interval too wide to be useful).",
    low=0,
    high=1,
)
FAIL_ON_DEGRADATION = Param(
    "fail_on_degradation",
    "bool",
    False,
    "Exit 2 when the champion is degraded, so that a scheduler can trigger retraining.",
)
# The driver.
REUSE_TRAINING = Param(
    "reuse_training", "bool", False, "Also reuse a finished train_model run with the same inputs."
)
REGISTER_MODEL = Param(
    "register_model",
    "bool",
    True,
    "Register the model as stock-<TICKER>-lstm (alias challenger) and make it champion when it beats the "
    "current champion on the same test days.",
)

# The universe: the pipeline for many tickers on Ray.
TICKERS = Param(
    "tickers",
    "string",
    None,
    "Tickers to run the pipeline for: comma-separated (MSFT,AAPL) or @FILE with one per line (# comments). "
    "data_source may hold {ticker}, replaced by each one.",
)
MAX_PARALLEL = Param(
    "max_parallel",
    "int",
    0,
    "Tickers run at once, one Ray task (1 CPU) each; 0: the machine's cores, or the cluster's.",
    low=0,
)
RAY_ADDRESS = Param(
    "ray_address",
    "string",
    "",
    "An existing Ray cluster (ray://host:10001, or host:6379 from inside it); empty: $RAY_ADDRESS, else "
    "a local Ray instance.",
)

DOWNLOAD_PARAMS = (COMPANY_ABBREVIATION, DATA_SOURCE, QUANDL_DATABASE, *PRICE_CHECK_PARAMS)
TRANSFORM_PARAMS = (MAX_ROW_LIMIT, *PRICE_CHECK_PARAMS)
TRAIN_PARAMS = (
    LSTM_UNITS,
    WINDOW,
    EPOCHS,
    BATCH_SIZE,
    TEST_FRACTION,
    SEED,
    VALIDATION_FRACTION,
    PATIENCE,
    MA_WINDOW,
    KNN_NEIGHBORS,
    BACKTEST_FOLDS,
)

# main's parameters: every step's, once each, and the driver's own.
PIPELINE_PARAMS = tuple(
    dict.fromkeys((*DOWNLOAD_PARAMS, *TRANSFORM_PARAMS, *TRAIN_PARAMS, REUSE_TRAINING, REGISTER_MODEL))
)


@dataclass(frozen=True)
class EntryPoint:
    """An MLproject entry point: its command and its parameters, in command-line order."""

    name: str
    command: str
    params: tuple[Param, ...]
    comment: str = ""


ENTRY_POINTS = (
    EntryPoint(DOWNLOAD_STEP, f"python -m flow_steps.{DOWNLOAD_STEP}", DOWNLOAD_PARAMS),
    EntryPoint(
        TRANSFORM_STEP, f"python -m flow_steps.{TRANSFORM_STEP}", (DATASET_STOCK_CSV, *TRANSFORM_PARAMS)
    ),
    EntryPoint(TRAIN_STEP, f"python -m flow_steps.{TRAIN_STEP}", (STOCK_DATA, *TRAIN_PARAMS)),
    EntryPoint(
        REGISTER_STEP,
        f"python -m flow_steps.{REGISTER_STEP}",
        (MODEL_URI, STOCK_DATA, TEST_FRACTION, MODEL_NAME),
    ),
    EntryPoint(
        FORECAST_ENTRY_POINT,
        f"python -m flow_steps.{FORECAST_ENTRY_POINT}",
        (MODEL, *DOWNLOAD_PARAMS, HORIZON, OUTPUT),
        comment='-P output=<file.csv> also writes the table there; "" (the default) writes no file.',
    ),
    EntryPoint(
        MONITOR_ENTRY_POINT,
        f"python -m flow_steps.{MONITOR_ENTRY_POINT}",
        (
            *DOWNLOAD_PARAMS,
            WINDOW_FORECASTS,
            MAX_RMSE_VS_NAIVE,
            MIN_COVERAGE_80,
            MAX_COVERAGE_80,
            FAIL_ON_DEGRADATION,
        ),
        comment="Scores the ticker's logged forecasts against the closes data_source now has.",
    ),
    EntryPoint(
        MAIN_ENTRY_POINT,
        "python main.py",
        PIPELINE_PARAMS,
        comment="The whole pipeline; every step parameter can be set here.",
    ),
    EntryPoint(
        UNIVERSE_ENTRY_POINT,
        f"python -m flow_steps.{UNIVERSE_ENTRY_POINT}",
        (
            TICKERS,
            *(param for param in PIPELINE_PARAMS if param is not COMPANY_ABBREVIATION),
            MAX_PARALLEL,
            RAY_ADDRESS,
        ),
        comment="The pipeline for every ticker in tickers, on Ray; every parameter of main applies to each.",
    ),
)
BY_ENTRY_POINT = {entry_point.name: entry_point for entry_point in ENTRY_POINTS}


def options(entry_point: str) -> Callable:
    """Decorator adding the entry point's click options, in its order, to a command."""

    def decorate(command: Callable) -> Callable:
        for param in reversed(BY_ENTRY_POINT[entry_point].params):
            command = click.option(
                param.flag,
                param.name,
                type=param.click_type(),
                required=param.required,
                default=param.default,
                show_default=not param.required and param.default != "",
                help=param.help,
            )(command)
        return command

    return decorate


BOOLEAN_WORDS = frozenset(
    word for pair in ("true/false", "1/0", "yes/no", "y/n", "on/off", "t/f") for word in pair.split("/")
)


def expand_bare_flags(args: list[str], boolean_flags: Iterable[str]) -> list[str]:
    """`--reuse-training` given alone means `--reuse-training true`; a value after it is kept.

    Boolean parameters take a value (MLproject passes `--reuse-training false`), yet read like flags.
    """
    flags, expanded = set(boolean_flags), []
    for position, arg in enumerate(args):
        expanded.append(arg)
        following = args[position + 1] if position + 1 < len(args) else None
        if arg in flags and (following is None or following.lower() not in BOOLEAN_WORDS):
            expanded.append("true")
    return expanded


class SpecCommand(click.Command):
    """A click command whose boolean options (`--flag true|false`) may also be given alone."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        boolean_flags = [
            flag
            for option in self.params
            if isinstance(option, click.Option) and option.type is click.BOOL and not option.is_flag
            for flag in option.opts
        ]
        return super().parse_args(ctx, expand_bare_flags(args, boolean_flags))


def check_values(params: Iterable[Param], values: dict[str, object]) -> None:
    """Range-check `values` (name -> value) against their parameters."""
    for param in params:
        if param.name in values:
            param.check(values[param.name])


def _values_class(name: str, params: tuple[Param, ...], doc: str) -> type:
    """A frozen dataclass with one field per parameter, defaults from the spec."""
    fields = [(param.name, param.python_type, dataclasses.field(default=param.default)) for param in params]
    made = dataclasses.make_dataclass(name, fields, frozen=True)
    made.__doc__ = doc
    return made


TrainParams = _values_class("TrainParams", TRAIN_PARAMS, "Parameters of train_model, defaults included.")
PriceChecks = _values_class(
    "PriceChecks", PRICE_CHECK_PARAMS, "How raw prices are checked, defaults included."
)
DEFAULT_CHECKS = PriceChecks()


def check_train_params(params: TrainParams) -> None:
    """Refuse out-of-range or inconsistent training parameters before any work starts."""
    check_values(TRAIN_PARAMS, dataclasses.asdict(params))
    if params.ma_window > params.window:
        raise PipelineError(f"ma_window ({params.ma_window}) must not exceed window ({params.window})")
