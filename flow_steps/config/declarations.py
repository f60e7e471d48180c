"""Every parameter of every entry point, declared once: name, type, default, allowed range and help.

Entry points take them in the groups at the end (config/entry_points.py); the values classes
(config/values.py) take their fields and defaults from them.
"""

from __future__ import annotations

from flow_steps.config.as_of import NOW, check_as_of
from flow_steps.config.calendars import DEFAULT_CALENDAR, NO_CALENDAR, check_calendar
from flow_steps.config.names import (
    DEFAULT_QUANDL_DATABASE,
    MAX_HORIZON,
    QUANDL_SOURCE,
    SAMPLE_SOURCE,
    TIINGO_SOURCE,
    YAHOO_SOURCE,
)
from flow_steps.config.spec import Param, significance_level

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
    f"Data Link API, key in QUANDL_API_KEY), '{TIINGO_SOURCE}' (Tiingo's end-of-day API, key in "
    f"TIINGO_API_KEY), '{YAHOO_SOURCE}' (Yahoo Finance, no key, personal use), an http(s):// URL of a CSV "
    "file, or a CSV path.",
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
CALENDAR = Param(
    "calendar",
    "string",
    DEFAULT_CALENDAR,
    "Exchange whose trading sessions the prices follow (an exchange-calendars code: XNYS New York, XLON "
    "London, XTKS Tokyo, ...): forecasts are dated with its next sessions, and gaps are counted in its "
    f"missing sessions; '{NO_CALENDAR}': weekdays, and gaps in calendar days (max_gap_days).",
    validate=check_calendar,
)
MAX_GAP_SESSIONS = Param(
    "max_gap_sessions",
    "int",
    10,
    "Longest run of the calendar's sessions without a price that a file may have; a shorter one is named "
    f"(a warning and a tag). Holidays and weekends never count. Not used with calendar={NO_CALENDAR}.",
    low=0,
)
MAX_GAP_DAYS = Param(
    "max_gap_days",
    "int",
    10,
    f"With calendar={NO_CALENDAR}: longest gap, in calendar days, allowed between consecutive prices "
    "(weekends and holidays fit).",
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
AS_OF = Param(
    "as_of",
    "string",
    NOW,
    f"The moment taken as now: '{NOW}', a date (2026-12-04: after that day's close) or a date and time "
    "(2026-12-04T21:30:00Z). Prices are read as they were then: every bar whose session had not closed "
    "by then is dropped (a source answering during trading hours sends today's unfinished bar).",
    validate=check_as_of,
)
PRICE_CHECK_PARAMS = (DATE_FORMAT, CALENDAR, MAX_GAP_SESSIONS, MAX_GAP_DAYS, MAX_DAILY_MOVE, ON_SUSPECT_MOVE)
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

PROMOTION_ALPHA = significance_level(
    "promotion_alpha",
    "Level of the promotion tests: the challenger replaces the champion only when a one-sided "
    "Diebold-Mariano test on the test days' squared errors gives a p-value at most this "
    "(docs/deployment.md).",
)
MIN_IMPROVEMENT = Param(
    "min_improvement",
    "float",
    0.005,
    "... and its test RMSE is lower than the champion's by at least this share (0.005 = 0.5%).",
    low=0,
    high=1,
    high_open=True,
)
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
    250,
    "How many of the newest logged forecasts (forecast runs) whose dates have real closes to score; the "
    "tests take each one's first day (250: a year of daily forecasts).",
    low=1,
)
MONITOR_ALPHA = significance_level(
    "monitor_alpha",
    "Level of monitor's tests: the champion is degraded when its realized loss is significantly worse than "
    "the naive forecast's (Diebold-Mariano) or an interval fails Kupiec's or Christoffersen's test, p-value "
    "at most this (docs/deployment.md).",
)
FAIL_ON_DEGRADATION = Param(
    "fail_on_degradation",
    "bool",
    False,
    "Exit 2 when the champion is degraded, so that a scheduler can trigger retraining.",
)
# replay: the daily loop over a range of sessions.
REPLAY_START = Param(
    "start",
    "string",
    None,
    "First session to replay (a date, 2012-01-03); the first champion is trained as of the session before.",
    validate=check_as_of,
)
REPLAY_END = Param(
    "end", "string", None, "Last session to replay (a date, 2012-12-31).", validate=check_as_of
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
    "current champion on the same test days, by evidence (promotion_alpha, min_improvement).",
)
CRASH_RETRIES = Param(
    "crash_retries",
    "int",
    1,
    "Times a step whose process crashed (died of SIGSEGV, SIGBUS, SIGABRT, SIGILL or SIGFPE) is run again; "
    "a step that refused its input, or was stopped (SIGINT, SIGTERM, SIGKILL), never is.",
    low=0,
    high=3,
)

DOWNLOAD_PARAMS = (COMPANY_ABBREVIATION, DATA_SOURCE, QUANDL_DATABASE, AS_OF, *PRICE_CHECK_PARAMS)
TRANSFORM_PARAMS = (MAX_ROW_LIMIT, *PRICE_CHECK_PARAMS)
PROMOTION_PARAMS = (PROMOTION_ALPHA, MIN_IMPROVEMENT)
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
STEP_PARAMS = (*DOWNLOAD_PARAMS, *TRANSFORM_PARAMS, *TRAIN_PARAMS, REUSE_TRAINING, REGISTER_MODEL)
PIPELINE_PARAMS = tuple(dict.fromkeys((*STEP_PARAMS, *PROMOTION_PARAMS)))
