"""The daily loop replayed: what the schedule (deploy/daily.sh) would have done as of each session.

For every session of the range, in order, as of its close: the champion forecasts the next session
(with its adaptive and static intervals), monitor's tests judge the champion's one-day-ahead forecasts
made since the last retraining (deployment/degradation.py `judge`), and a degraded champion is retrained
by the pipeline as of that day (`run_pipeline`, promotion by evidence deciding whether the new model
serves). A model is loaded once per version. The registry history is the replay's own (a registered
model named after the replay run), so the ticker's real champion is never touched.

Prices are read once, as of the range's last day, and each day sees those through it. The retrainings
read the source again as of their day. Adjusted closes are as the source adjusts them when read: a
dividend paid after a day rescales that day's adjusted prices by a constant, which no ratio here sees.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from flow_steps.config.names import (
    CHAMPION_ALIAS,
    DATE_COLUMN,
    DAYS_AHEAD_COLUMN,
    HORIZON_PARAM,
    MODEL_VERSION_COLUMN,
    PRICE_COLUMN,
    REPLAY_CHART_PATH,
    REPLAY_DAYS_PATH,
    REPLAY_SCORED_DAYS_PATH,
    STATIC_INTERVALS,
    TAG_CHAMPION_VERSION,
)
from flow_steps.deployment.degradation import ACTUAL_COLUMN, RUN_COLUMN, judge, scored_days
from flow_steps.deployment.prediction import forecast_table, load_model, request_prices
from flow_steps.deployment.versions import alias_version_number
from flow_steps.model.adaptive import answer_columns
from flow_steps.model.intervals import LEVELS

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 20  # sessions between two progress lines
ROLLING_DAYS = 20  # the chart's rolling coverage


@dataclass(frozen=True)
class Day:
    """What the schedule did as of one session."""

    date: pd.Timestamp
    champion: str
    degradation: str | None
    retrained: bool
    promoted: bool


class Champions:
    """The registered model's champion, each version loaded once."""

    def __init__(self, client: MlflowClient, model_name: str):
        self.client, self.model_name, self.loaded = client, model_name, {}

    def current(self) -> tuple[str, mlflow.pyfunc.PyFuncModel]:
        version = alias_version_number(self.client, self.model_name, CHAMPION_ALIAS)
        if version not in self.loaded:
            logger.info("Loading %s version %s", self.model_name, version)
            self.loaded[version] = load_model(f"models:/{self.model_name}/{version}")
        return version, self.loaded[version]


def next_session_forecast(model: mlflow.pyfunc.PyFuncModel, prices: pd.DataFrame, calendar: str) -> dict:
    """The model's forecast of the session after the last of `prices`, as the forecast table's row."""
    request = request_prices(prices, model.model_config)[[PRICE_COLUMN]].reset_index(drop=True)
    answer = model.predict(request, params={HORIZON_PARAM: 1})
    return forecast_table(prices, answer, calendar).iloc[0].to_dict()


def replay_days(
    prices: pd.DataFrame,
    sessions: pd.DatetimeIndex,
    champions: Champions,
    retrain: Callable[[pd.Timestamp], None],
    calendar: str,
    window: int,
    alpha: float,
) -> tuple[pd.DataFrame, list[Day]]:
    """Run the schedule as of each session: the forecast rows made and what was decided each day."""
    rows, days, since = [], [], sessions[0]
    for number, day in enumerate(sessions, start=1):
        through = prices[prices[DATE_COLUMN] <= day]
        version, model = champions.current()
        row = next_session_forecast(model, through, calendar)
        rows.append(
            {**row, RUN_COLUMN: f"{day:%Y-%m-%d}", DAYS_AHEAD_COLUMN: 1, MODEL_VERSION_COLUMN: version}
        )
        scored = scored_days(pd.DataFrame(rows), through)
        recent = scored[
            (pd.to_datetime(scored[RUN_COLUMN]) >= since) & (scored[MODEL_VERSION_COLUMN] == version)
        ]
        degradation = judge(recent.tail(window), alpha).degradation
        promoted = False
        if degradation:
            logger.info(
                "%s: the champion (version %s) is degraded: %s; retraining",
                f"{day:%Y-%m-%d}",
                version,
                degradation,
            )
            retrain(day)
            promoted = champions.current()[0] != version
            since = day + pd.Timedelta(days=1)  # the evidence starts again with the next forecasts
        days.append(Day(day, version, degradation, bool(degradation), promoted))
        if number % PROGRESS_EVERY == 0 or number == len(sessions):
            logger.info(
                "Replayed %d/%d sessions (%s): champion version %s, %d flagged, %d retrainings",
                number,
                len(sessions),
                f"{day:%Y-%m-%d}",
                champions.current()[0],
                sum(d.degradation is not None for d in days),
                sum(d.retrained for d in days),
            )
    return pd.DataFrame(rows), days


def static_hits(scored: pd.DataFrame, level: int) -> pd.Series:
    """1.0 where the close fell inside the static interval at `level`."""
    lower, upper = answer_columns(STATIC_INTERVALS, level)
    actual = scored[ACTUAL_COLUMN]
    return ((actual >= scored[lower]) & (actual <= scored[upper])).astype(float)


def replay_metrics(scored: pd.DataFrame, days: list[Day], seconds: float, loads: int) -> dict[str, float]:
    """The replay's figures: realized RMSE / naive, coverage (default and static intervals), the days
    flagged, retrainings, promotions, models loaded and the wall time."""
    rmse = float(np.sqrt(np.mean(scored["error"] ** 2)))
    naive = float(np.sqrt(np.mean(scored["naive_error"] ** 2)))
    metrics = {
        "sessions": float(len(days)),
        "days_scored": float(len(scored)),
        "realized_rmse": rmse,
        "realized_rmse_vs_naive": rmse / naive if naive > 0 else float("nan"),
        "days_flagged": float(sum(day.degradation is not None for day in days)),
        "retrainings": float(sum(day.retrained for day in days)),
        "promotions": float(sum(day.promoted for day in days)),
        "models_loaded": float(loads),
        "wall_seconds": seconds,
    }
    for level in LEVELS:
        metrics[f"realized_coverage_{level}"] = float(scored[f"inside_{level}"].mean())
        metrics[f"realized_static_coverage_{level}"] = float(static_hits(scored, level).mean())
    return metrics


def days_table(scored: pd.DataFrame, days: list[Day]) -> pd.DataFrame:
    """One row per session: the champion, whether it was flagged (and why), retrained, promoted."""
    return pd.DataFrame(
        {
            DATE_COLUMN: [day.date for day in days],
            TAG_CHAMPION_VERSION: [day.champion for day in days],
            "degradation": [day.degradation or "" for day in days],
            "retrained": [day.retrained for day in days],
            "promoted": [day.promoted for day in days],
        }
    )


def replay_chart(scored: pd.DataFrame, days: list[Day]):
    """Rolling coverage (default and static intervals, 80% and 95%) and the champion over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=(3, 1))
    dates = pd.to_datetime(scored[DATE_COLUMN])
    for level in LEVELS:
        top.plot(dates, scored[f"inside_{level}"].rolling(ROLLING_DAYS).mean(), label=f"adaptive {level}%")
        top.plot(
            dates, static_hits(scored, level).rolling(ROLLING_DAYS).mean(), "--", label=f"static {level}%"
        )
        top.axhline(level / 100, color="grey", linewidth=0.8)
    top.set_ylabel(f"coverage, rolling {ROLLING_DAYS} days")
    top.legend(loc="lower left", fontsize=8)
    bottom.step([day.date for day in days], [int(day.champion) for day in days], where="post")
    for day in days:
        if day.retrained:
            bottom.axvline(day.date, color="red" if not day.promoted else "green", linewidth=0.8)
    bottom.set_ylabel("champion")
    figure.tight_layout()
    return figure


def replay(
    prices: pd.DataFrame,
    sessions: pd.DatetimeIndex,
    champions: Champions,
    retrain: Callable[[pd.Timestamp], None],
    calendar: str,
    window: int,
    alpha: float,
) -> dict[str, float]:
    """Replay the sessions and log the outcome on the active run: figures, the days table, the chart."""
    started = time.monotonic()
    forecasts, days = replay_days(prices, sessions, champions, retrain, calendar, window, alpha)
    scored = scored_days(forecasts, prices)
    metrics = replay_metrics(scored, days, time.monotonic() - started, len(champions.loaded))
    mlflow.log_metrics(metrics)
    mlflow.log_text(days_table(scored, days).to_csv(index=False, date_format="%Y-%m-%d"), REPLAY_DAYS_PATH)
    mlflow.log_text(scored.to_csv(index=False, date_format="%Y-%m-%d"), REPLAY_SCORED_DAYS_PATH)
    mlflow.log_figure(replay_chart(scored, days), REPLAY_CHART_PATH)
    return metrics
