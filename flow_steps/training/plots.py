"""Figures for the evaluation artifacts (matplotlib's object API: no global state, no GUI backend)."""

from __future__ import annotations

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from flow_steps.model.intervals import Interval

ZOOM_DAYS = 60


def forecast_figure(
    dates: pd.Series,
    actual: np.ndarray,
    forecasts: dict[str, np.ndarray],
    title: str,
    band: tuple[Interval, str] | None = None,
    zoom_days: int = ZOOM_DAYS,
) -> Figure:
    """Actual closes and forecasts over the test period, and a zoom on its last `zoom_days` days,
    with an optional shaded interval (`band`: the interval and its label).

    The zoom shows what a full-period chart hides: a forecast that copies yesterday's close runs
    one day behind the actual series.
    """
    figure = Figure(figsize=(12, 8), layout="constrained")
    full, zoom = figure.subplots(2, 1)
    dates = pd.to_datetime(pd.Series(dates)).reset_index(drop=True)
    tail = slice(max(0, len(dates) - zoom_days), None)
    for axes, part, heading in (
        (full, slice(None), f"Test period: {len(dates)} days"),
        (zoom, tail, f"Last {len(dates[tail])} test days, zoomed"),
    ):
        if band is not None:
            interval, label = band
            lower, upper = np.asarray(interval.lower)[part], np.asarray(interval.upper)[part]
            axes.fill_between(dates[part], lower, upper, color="tab:blue", alpha=0.18, label=label)
        axes.plot(dates[part], np.asarray(actual)[part], color="black", linewidth=1.6, label="actual close")
        for name, values in forecasts.items():
            axes.plot(dates[part], np.asarray(values)[part], linewidth=1.0, label=f"{name} forecast")
        axes.set_title(heading)
        axes.set_xlabel("date")
        axes.set_ylabel("close (price units of the source)")
        axes.grid(alpha=0.3)
        axes.legend(loc="best")
        locator = mdates.AutoDateLocator()
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    figure.suptitle(title)
    return figure
