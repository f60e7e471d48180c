"""The contract shared by the steps and the driver: step names, artifact paths, tags and metrics."""

from pathlib import Path

# The project's root folder: MLproject, main.py and flow_steps/ (what `mlflow run` and Ray ship).
PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Entry points of MLproject, one MLflow run each.
DOWNLOAD_STEP = "download_raw_data"
TRANSFORM_STEP = "transform_data"
TRAIN_STEP = "train_model"
REGISTER_STEP = "register_model"
PIPELINE_STEPS = (DOWNLOAD_STEP, TRANSFORM_STEP, TRAIN_STEP, REGISTER_STEP)
MAIN_ENTRY_POINT = "main"
FORECAST_ENTRY_POINT = "forecast"
UNIVERSE_ENTRY_POINT = "universe"
REPLAY_ENTRY_POINT = "replay"
MONITOR_ENTRY_POINT = "monitor"
TAG_UNIVERSE_RUN_ID = "universe_run_id"  # on each ticker's pipeline run, beside mlflow.parentRunId

# The experiment `python main.py` logs to unless told otherwise, and the tag with which MLflow 3's UI
# opens an experiment on its training runs (not its GenAI traces view).
DEFAULT_EXPERIMENT = "stock-market-prediction"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_EXPERIMENT_KIND = "custom_model_development"

# The Model Registry: one registered model per ticker, the serving alias and the newest candidate's.
CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"

# Artifacts each step writes, relative to its run's artifact root.
RAW_DATA_DIR = "raw-data"
TRANSFORMED_DATA_PATH = "transformed-data/prices.csv"
MODEL_ARTIFACT = "model"  # the logged model, in the train run's artifacts (runs:/<id>/model)
PREDICTIONS_PATH = "evaluation/predictions.csv"
METRICS_TABLE_PATH = "evaluation/metrics.csv"
FORECAST_PLOT_PATH = "evaluation/forecast.png"
BACKTEST_PATH = "evaluation/backtest.csv"
FORECAST_TABLE_PATH = "forecast/forecast.csv"  # on forecast runs; what monitor scores
MONITOR_BY_VERSION_PATH = "monitor/by_version.csv"  # on monitor runs: realized metrics per model version
MONITOR_SCORED_DAYS_PATH = "monitor/scored_days.csv"  # on monitor runs: every forecast row scored
REPLAY_DAYS_PATH = "replay/days.csv"  # on replay runs: what the schedule did each session
REPLAY_SCORED_DAYS_PATH = "replay/scored_days.csv"  # every replayed forecast scored
REPLAY_CHART_PATH = "replay/chart.png"  # rolling coverage and the champion over time

# Columns of the transformed data: the only columns train_model and the served model need.
DATE_COLUMN = "Date"
PRICE_COLUMN = "Close"

# Tags.
TAG_CODE_VERSION = "code_version"
TAG_ERROR = "error"
# On every parent and step run: which process runs it, so that a run whose process died can be marked KILLED.
TAG_PROCESS_HOST = "process_host"
TAG_PROCESS_ID = "process_id"
TAG_PROCESS_STARTED = "process_started"  # the process's start time in clock ticks since boot (Linux)
TAG_REUSED_PREFIX = "reused_"  # on the parent run: reused_<step> = "true" / "false"
TAG_CHILD_RUN_PREFIX = "run_id_"  # on the parent run: run_id_<step> = child run id
# On the parent run: each step run again after its process crashed, "train_model:SIGSEGV" (comma-separated).
TAG_CRASH_RETRIES = "crash_retries"
TAG_RAW_SHA256 = "raw_sha256"
TAG_RAW_ROWS = "raw_rows"
TAG_RAW_FIRST_DATE = "raw_first_date"
TAG_RAW_LAST_DATE = "raw_last_date"
TAG_AS_OF = "as_of_utc"  # the instant a run took as now (ISO, UTC): no bar after it was read
TAG_DATA_SOURCE = "data_source_resolved"
TAG_REGISTERED_MODEL = "registered_model"  # on the register and parent runs
TAG_MODEL_VERSION = "model_version"
TAG_CHAMPION_VERSION = "champion_version"
TAG_PROMOTION = "promotion"  # one of the four decisions below
FIRST_VERSION = "first_version"
PROMOTED = "promoted"
KEPT = "kept"
ALREADY_REGISTERED = "already_registered"
TAG_PROMOTION_REASON = "promotion_reason"
TAG_CHAMPION_VERSION_BEFORE = "champion_version_before"
TAG_CHAMPION_SAW_TEST_DAYS = "champion_saw_test_days"
# On a new version and its register run: "true" when it shows no evidence of skill over the naive forecast
# (the promotion test against naive fails); the first version becomes champion all the same.
TAG_NO_SKILL_OVER_NAIVE = "no_skill_over_naive"
TAG_STOCK_DATA_SHA256 = "stock_data_sha256"  # on train runs: the prepared prices trained and tested on
# On register runs: where each score came from, SCORED_FROM_TRAINING or SCORED_HERE.
TAG_CHALLENGER_SCORE_SOURCE = "challenger_score_source"
TAG_CHAMPION_SCORE_SOURCE = "champion_score_source"
SCORED_FROM_TRAINING = "train_model run, same prices and test days"
SCORED_HERE = "loaded and scored on these test days"
TAG_MODEL_URI = "model_uri"  # on the parent and forecast runs
TAG_DEGRADED = "degraded"  # on monitor runs: "true" when the champion is degraded
TAG_DEGRADATION = "degradation"  # on monitor runs: why, in one line
TAG_TOO_FEW_DAYS = "too_few_days"  # on monitor runs: the tests that could not run yet, and the days they need
TAG_PRICE_COLUMN = "price_column"  # on the transform run
TAG_TICKER = "ticker"  # on the transform run: names the datasets of the runs that read its prices
TAG_SOURCE_NEWEST_FIRST = "source_newest_first"
TAG_DATE_FORMAT = "date_format_resolved"  # on the download and transform runs: how the dates were read
TAG_SUSPECT_MOVES = "suspect_moves"  # on the download, transform, train and parent runs, when there are any
TAG_SESSION_HOLES = "session_holes"  # the same runs: the calendar's sessions without a price, when any
TAG_NON_SESSION_DATES = "non_session_dates"  # the same runs: prices dated on days the exchange was closed
DATA_FINDING_TAGS = (TAG_SUSPECT_MOVES, TAG_SESSION_HOLES, TAG_NON_SESSION_DATES)  # what training learnt from
# On registered versions: lineage back to the training run, its data and its test days.
TAG_TRAIN_RUN_ID = "train_run_id"
TAG_TRAINED_THROUGH = "trained_through"

# Metrics of train_model. The LSTM's are test_<metric>, a baseline's <baseline>_test_<metric>
# (flow_steps.training.evaluation names them); these few are what the driver copies onto the parent run.
METRIC_TEST_RMSE = "test_rmse"
METRIC_NAIVE_TEST_RMSE = "naive_test_rmse"
METRIC_TEST_RMSE_VS_NAIVE = "test_rmse_vs_naive"
METRIC_TEST_COVERAGE_80 = "test_coverage_80"  # the share of test days inside the LSTM's 80% interval
METRIC_TEST_COVERAGE_95 = "test_coverage_95"
METRIC_TEST_DIRECTIONAL_ACCURACY = "test_directional_accuracy"
# The LSTM's intervals both ways, side by side: static (one calibrated multiplier) and adaptive (ACI,
# flow_steps/model/adaptive.py), as <way>_test_coverage_<level> and <way>_test_interval_score_<level>;
# test_coverage_<level> and test_interval_score_<level> are the default way's, the served model's.
STATIC_INTERVALS = "static"
ADAPTIVE_INTERVALS = "adaptive"
INTERVAL_METHODS = (STATIC_INTERVALS, ADAPTIVE_INTERVALS)
METRIC_STATIC_TEST_COVERAGE_80 = "static_test_coverage_80"
METRIC_STATIC_TEST_COVERAGE_95 = "static_test_coverage_95"
METRIC_ADAPTIVE_TEST_COVERAGE_80 = "adaptive_test_coverage_80"
METRIC_ADAPTIVE_TEST_COVERAGE_95 = "adaptive_test_coverage_95"


def interval_method_prefix(method: str) -> str:
    """The prefix of one way's interval metrics (`adaptive_`) and answer columns (`adaptive_lower_80`)."""
    return f"{method}_"


METRIC_N_TEST_DAYS = "n_test_days"
METRIC_TRAIN_LOSS = "train_loss"
METRIC_VAL_LOSS = "val_loss"
METRIC_CHALLENGER_TEST_RMSE = "challenger_test_rmse"  # register_model's scores on the same test days
METRIC_CHAMPION_TEST_RMSE = "champion_test_rmse"
# register_model's evidence (deployment/evidence.py), challenger against champion on the same test days:
# Diebold-Mariano (HLN) on the squared errors, its one-sided p-value, the mean of challenger - champion
# squared error (negative: the challenger is better), 1 - challenger RMSE / champion RMSE; the same test on
# the 80% interval scores (H1: the challenger's are worse); and the challenger against the naive forecast.
METRIC_PROMOTION_STATISTIC = "promotion_dm_statistic"
METRIC_PROMOTION_P_VALUE = "promotion_p_value"
METRIC_PROMOTION_MEAN_LOSS_DIFFERENCE = "promotion_mean_loss_difference"
METRIC_PROMOTION_IMPROVEMENT = "promotion_improvement"
METRIC_INTERVAL_STATISTIC = "promotion_interval_dm_statistic"
METRIC_INTERVAL_P_VALUE = "promotion_interval_p_value"
METRIC_SKILL_STATISTIC = "skill_dm_statistic"
METRIC_SKILL_P_VALUE = "skill_p_value"
METRIC_SKILL_IMPROVEMENT = "skill_improvement"
# monitor's evidence on the champion's one-day-ahead forecasts: the days tested, Diebold-Mariano against
# the naive forecast (H1: the champion's loss is higher), and kupiec_<level>_* / christoffersen_<level>_*
# (coverage_test_metric) for each interval.
METRIC_TESTED_DAYS = "realized_tested_days"
METRIC_MONITOR_STATISTIC = "realized_dm_statistic"
METRIC_MONITOR_P_VALUE = "realized_dm_p_value"
METRIC_LARGEST_GAP_DAYS = "largest_gap_days"  # download and transform: the checks' findings
METRIC_LARGEST_GAP_SESSIONS = "largest_gap_sessions"
METRIC_MISSING_SESSIONS = "missing_sessions"
METRIC_NON_SESSION_PRICES = "non_session_prices"
METRIC_LARGEST_DAILY_MOVE = "largest_daily_move"
HEADLINE_METRICS = (
    METRIC_TEST_RMSE,
    METRIC_NAIVE_TEST_RMSE,
    METRIC_TEST_RMSE_VS_NAIVE,
    "test_mae",
    "test_mase",
    "test_directional_accuracy",
    "test_up_share",
    "backtest_test_rmse_vs_naive",
)

# The served model's interface: request column PRICE_COLUMN, request parameter HORIZON_PARAM, and one
# answer row per trading day ahead.
DAYS_AHEAD_COLUMN = "days_ahead"
FORECAST_COLUMN = "forecast_close"
ROWS_OUT_METRIC = "rows_out"  # transform_data: rows of prepared prices
# The forecast table: besides the date and forecast, the last close it starts from (monitoring's naive
# forecast) and, in a batch table, the registry version that answered for each ticker.
LAST_CLOSE_COLUMN = "last_close"
MODEL_VERSION_COLUMN = "model_version"
TICKER_COLUMN = "ticker"  # in a batch forecast table and a universe's summary
# On forecast runs: the tickers forecast, as ",MSFT,AAPL," (to read), and a tag per ticker,
# forecast_ticker.MSFT = "true", by which monitor finds a ticker's (an equality on the tag's key: MLflow's
# index of tags by key, where a LIKE on the list reads every forecast run's tag).
TAG_FORECAST_TICKERS = "forecast_tickers"
FORECAST_TICKER_TAG_PREFIX = "forecast_ticker."
FORECAST_TICKER_TAG_VALUE = "true"
HORIZON_PARAM = "horizon"
# Keys of the served model's config that a forecast reads too (it sends the closes after the training end).
MODEL_CONFIG_WINDOW = "window"
MODEL_CONFIG_TRAINED_THROUGH = "trained_through"  # the last training close's date, YYYY-MM-DD
MAX_HORIZON = 260  # about a year of trading days; recursive forecasts beyond that are noise

# Price sources (see flow_steps.data.sources).
SAMPLE_SOURCE = "sample"
QUANDL_SOURCE = "quandl"
TIINGO_SOURCE = "tiingo"
YAHOO_SOURCE = "yahoo"
DEFAULT_QUANDL_DATABASE = "WIKI"
SAMPLE_TICKER = "MSFT"


def raw_data_path(ticker: str) -> str:
    """Artifact path of the raw CSV that download_raw_data logs for `ticker`."""
    return f"{RAW_DATA_DIR}/{ticker}.csv"


def coverage_test_metric(test: str, level: int, what: str) -> str:
    """monitor's metric of a coverage test: kupiec_80_p_value, christoffersen_95_statistic, ..."""
    return f"{test}_{level}_{what}"


def forecast_ticker_tag(ticker: str) -> str:
    """The tag a forecast run carries (value "true") for each ticker it forecast: forecast_ticker.MSFT."""
    return f"{FORECAST_TICKER_TAG_PREFIX}{ticker}"


def forecast_tags(tickers: list[str]) -> dict[str, str]:
    """A forecast run's ticker tags: the list (",MSFT,AAPL,") and one per ticker."""
    listed = {TAG_FORECAST_TICKERS: f",{','.join(tickers)},"}
    return listed | {forecast_ticker_tag(ticker): FORECAST_TICKER_TAG_VALUE for ticker in tickers}


def registered_model_name(ticker: str) -> str:
    """Name of the registered model for `ticker`: stock-<TICKER>-lstm."""
    return f"stock-{ticker}-lstm"
