"""Forecasts: a logged or registered model's next sessions from the latest prices, as a table.

Prices come from the same sources as download_raw_data and are cleaned the same way as for training
(adjusted close when the source has one); the model forecasts recursively from the latest closes.
Dates are the next sessions of `calendar` (XNYS by default) after the last price: weekends and the
exchange's holidays are skipped; `calendar=none` dates them Monday to Friday.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from flow_steps.config.errors import PipelineError, one_line
from flow_steps.config.names import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    DATE_COLUMN,
    FORECAST_COLUMN,
    HORIZON_PARAM,
    LAST_CLOSE_COLUMN,
    MODEL_CONFIG_TRAINED_THROUGH,
    MODEL_CONFIG_WINDOW,
    MODEL_VERSION_COLUMN,
    PRICE_COLUMN,
    TAG_MODEL_VERSION,
    TICKER_COLUMN,
    registered_model_name,
)
from flow_steps.config.values import PriceChecks
from flow_steps.data.ingest import load_prices
from flow_steps.data.sessions import next_sessions
from flow_steps.data.sources import fetch_raw_prices
from flow_steps.data.tickers import normalize_ticker, ticker_source
from flow_steps.deployment.versions import alias_version_number
from flow_steps.model.adaptive import ANSWER_INTERVAL_COLUMNS
from flow_steps.model.intervals import LEVELS, lower_column, upper_column
from flow_steps.runtime.interruption import interruptions_held

logger = logging.getLogger(__name__)

CHANGE_COLUMN = "change_pct"
ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


def forecast_table(prices: pd.DataFrame, answer: pd.DataFrame, calendar: str) -> pd.DataFrame:
    """Dates (the calendar's sessions after the last price), forecast closes, % change from the last
    close, the prediction intervals the model gave (the default way's and the other's, see
    flow_steps/model/adaptive.py), and the last close they start from (what monitoring
    compares the naive forecast with)."""
    last_date, last_close = prices[DATE_COLUMN].iloc[-1], float(prices[PRICE_COLUMN].iloc[-1])
    dates = next_sessions(calendar, last_date, len(answer))
    values = answer[FORECAST_COLUMN].to_numpy(dtype=float)
    bounds = {
        column: answer[column].to_numpy(dtype=float) for column in ANSWER_INTERVAL_COLUMNS if column in answer
    }
    return pd.DataFrame(
        {
            DATE_COLUMN: dates,
            FORECAST_COLUMN: values,
            CHANGE_COLUMN: 100 * (values / last_close - 1),
            **bounds,
            LAST_CLOSE_COLUMN: last_close,
        }
    )


def load_model(model_uri: str) -> mlflow.pyfunc.PyFuncModel:
    """Load a pyfunc model, or explain in one line why it cannot be."""
    try:
        return mlflow.pyfunc.load_model(model_uri)
    except (MlflowException, OSError) as error:
        message = error.message if isinstance(error, MlflowException) else str(error)
        raise PipelineError(f"model '{model_uri}' cannot be loaded: {message}") from error


def resolve_model_uri(model: str, company_abbreviation: str) -> str:
    """A model URI as given, or `champion` / `challenger` as that alias of the ticker's registered model."""
    if model in (CHAMPION_ALIAS, CHALLENGER_ALIAS):
        return f"models:/{registered_model_name(company_abbreviation.strip().upper())}@{model}"
    return model


def registry_version_tags(model_uri: str) -> dict[str, str]:
    """The registry version that answers `models:/<name>@<alias>` (the one the alias points to now) or
    `models:/<name>/<version>`: a record of what answered, by which monitor groups forecasts."""
    if numbered := VERSION_URI.match(model_uri):
        return {TAG_MODEL_VERSION: numbered["version"]}
    match = ALIAS_URI.match(model_uri)
    if not match:
        return {}
    try:
        number = alias_version_number(MlflowClient(), match["name"], match["alias"])
    except MlflowException:
        return {}  # loading the model reports the problem
    return {TAG_MODEL_VERSION: number} if number else {}


def request_prices(prices: pd.DataFrame, model_config: dict | None) -> pd.DataFrame:
    """The prices a forecast sends the model: from `window` closes before the first close after the
    model's training end, so that its adaptive intervals walk through every close it was not trained on
    (and none it was); all of them for a model that does not say its window and training end."""
    config = model_config or {}
    if MODEL_CONFIG_WINDOW not in config or MODEL_CONFIG_TRAINED_THROUGH not in config:
        return prices
    window = int(config[MODEL_CONFIG_WINDOW])
    after = int(
        np.searchsorted(
            prices[DATE_COLUMN].to_numpy(), np.datetime64(config[MODEL_CONFIG_TRAINED_THROUGH]), "right"
        )
    )
    first = max(0, min(after, len(prices)) - window)
    return prices.iloc[min(first, max(0, len(prices) - window)) :]


def forecast(
    model_uri: str,
    company_abbreviation: str,
    data_source: str,
    quandl_database: str,
    horizon: int,
    checks: PriceChecks,
    now: pd.Timestamp,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cleaned prices (the closes by `now`) and the forecast table for the next `horizon` sessions."""
    ticker = normalize_ticker(company_abbreviation)
    raw = fetch_raw_prices(data_source, ticker, quandl_database, now, checks)
    prices = load_prices(raw.content, raw.resolved_source, checks=checks).prices
    with interruptions_held():  # a signal stops it after TensorFlow's work, never inside it
        model = load_model(model_uri)
        try:
            request = request_prices(prices, model.model_config)[[PRICE_COLUMN]].reset_index(drop=True)
            answer = model.predict(request, params={HORIZON_PARAM: horizon})
        except MlflowException as error:
            raise PipelineError(
                f"model '{model_uri}' refused the prices of {raw.resolved_source}: {error.message}"
            ) from error
    return prices, forecast_table(prices, answer, checks.calendar)


def _intervals(row: pd.Series) -> str:
    """`  [lower_80, upper_80]  [lower_95, upper_95]`, or nothing for a model without intervals."""
    if lower_column(LEVELS[0]) not in row:
        return ""
    return "".join(
        f"  {f'[{row[lower_column(level)]:.2f}, {row[upper_column(level)]:.2f}]':>18}" for level in LEVELS
    )


def _interval_heading(table: pd.DataFrame) -> str:
    if lower_column(LEVELS[0]) not in table:
        return ""
    return "".join(f"  {f'{level}% interval':>18}" for level in LEVELS)


def render(prices: pd.DataFrame, table: pd.DataFrame, model_uri: str) -> str:
    """The table as people read it: last known close, then one line per forecast day with its intervals."""
    last_date, last_close = prices[DATE_COLUMN].iloc[-1], float(prices[PRICE_COLUMN].iloc[-1])
    lines = [
        f"Model {model_uri}; last close {last_close:.2f} on {last_date:%Y-%m-%d}",
        f"{'date':<12}{'forecast':>10}{'change':>9}{_interval_heading(table)}",
    ]
    lines += [
        f"{row[DATE_COLUMN]:%Y-%m-%d}  {row[FORECAST_COLUMN]:>10.2f}{row[CHANGE_COLUMN]:>+8.2f}%"
        + _intervals(row)
        for _, row in table.iterrows()
    ]
    return "\n".join(lines)


VERSION_COLUMN = MODEL_VERSION_COLUMN


def forecast_tickers(
    model: str,
    tickers: list[str],
    data_source: str,
    quandl_database: str,
    horizon: int,
    checks: PriceChecks,
    now: pd.Timestamp,
) -> tuple[pd.DataFrame, list[str]]:
    """Every ticker's forecast in one table (ticker, model version, date, forecast, change), and one
    line per ticker that could not be forecast. `model` is an alias (champion, challenger)."""
    tables, failures = [], []
    for ticker in tickers:
        model_uri = resolve_model_uri(model, ticker)
        version = registry_version_tags(model_uri).get(TAG_MODEL_VERSION, "")
        try:
            _, table = forecast(
                model_uri, ticker, ticker_source(data_source, ticker), quandl_database, horizon, checks, now
            )
        except PipelineError as error:
            failures.append(f"{ticker}: {one_line(error)}")
            continue
        tables.append(table.assign(**{TICKER_COLUMN: ticker, VERSION_COLUMN: version}))
    if not tables:
        columns = [TICKER_COLUMN, VERSION_COLUMN, DATE_COLUMN, FORECAST_COLUMN, CHANGE_COLUMN]
        return pd.DataFrame(columns=columns), failures
    table = pd.concat(tables, ignore_index=True)
    first = [TICKER_COLUMN, VERSION_COLUMN]
    return table[first + [column for column in table.columns if column not in first]], failures


def render_many(table: pd.DataFrame, model: str) -> str:
    """The batch table as people read it: one line per ticker and day."""
    lines = [
        f"{model} of each ticker",
        f"{'ticker':<8}{'version':>8}  {'date':<12}{'forecast':>10}{'change':>9}{_interval_heading(table)}",
    ]
    lines += [
        f"{row[TICKER_COLUMN]:<8}{row[VERSION_COLUMN]:>8}  {row[DATE_COLUMN]:%Y-%m-%d}  "
        f"{row[FORECAST_COLUMN]:>10.2f}{row[CHANGE_COLUMN]:>+8.2f}%{_intervals(row)}"
        for _, row in table.iterrows()
    ]
    return "\n".join(lines)


def write_csv(table: pd.DataFrame, output: Path) -> None:
    """Write the table to `output` atomically: a failed write leaves any earlier file as it was."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=output.parent, suffix=".tmp", delete=False) as handle:
        table.to_csv(handle, index=False, date_format="%Y-%m-%d")
    os.replace(handle.name, output)
