"""Replay: the daily schedule (forecast, monitor, retrain when degraded) as of every session of a range.

    python -m flow_steps.replay --start 2012-01-03 --end 2012-12-31
    mlflow run . -e replay --env-manager local -P start=2012-01-03 -P end=2012-12-31 -P data_source=tiingo

The first champion is trained as of the session before `start`; then, for every session, the champion
forecasts the next one, monitor's tests judge it (at `monitor_alpha`, over its one-day-ahead forecasts
since the last retraining, at most `window_forecasts`), and a degraded champion is retrained as of that
day, promotion by evidence deciding whether the new model serves. One `replay` run holds the retrainings
as child runs and logs the figures, replay/days.csv, replay/scored_days.csv and replay/chart.png. The
registered model is the replay's own (`stock-<TICKER>-lstm-replay-<run id>`): the ticker's champion is
never touched. The work is orchestration/daily_loop.py's.
"""

from __future__ import annotations

import logging

import click
import pandas as pd
from mlflow.tracking import MlflowClient

from flow_steps.config.as_of import resolve_as_of
from flow_steps.config.declarations import AS_OF, PIPELINE_PARAMS, PRICE_CHECK_PARAMS
from flow_steps.config.entry_points import check_option, options
from flow_steps.config.errors import PipelineError
from flow_steps.config.names import DATE_COLUMN, REPLAY_ENTRY_POINT, registered_model_name
from flow_steps.config.spec import SpecCommand
from flow_steps.config.values import PriceChecks
from flow_steps.data.ingest import load_prices
from flow_steps.data.sources import check_data_source, fetch_raw_prices
from flow_steps.data.tickers import normalize_ticker
from flow_steps.orchestration.daily_loop import Champions, replay
from flow_steps.orchestration.driver import run_pipeline
from flow_steps.runtime.lifecycle import entry_point, refusals_explained, tracked_run
from flow_steps.runtime.tracking import experiment_label, run_name_unless_chosen, use_experiment

logger = logging.getLogger(__name__)


def replay_sessions(
    prices: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> tuple[pd.Timestamp, pd.DatetimeIndex]:
    """The last close before `start` (the first champion's as_of) and the closes from `start` to `end`."""
    dates = pd.DatetimeIndex(prices[DATE_COLUMN])
    before, sessions = dates[dates < start], dates[(dates >= start) & (dates <= end)]
    if before.empty or sessions.empty:
        raise PipelineError(
            f"start {start:%Y-%m-%d} .. end {end:%Y-%m-%d} needs closes before start and in the range; the "
            f"prices run {dates[0]:%Y-%m-%d} .. {dates[-1]:%Y-%m-%d}"
        )
    return before[-1], sessions


def replay_in_run(
    run_id: str,
    values: dict[str, str],
    checks: PriceChecks,
    first: pd.Timestamp,
    last: pd.Timestamp,
    window: int,
    alpha: float,
) -> dict[str, float]:
    """Inside the replay run: read the prices once, train the first champion, replay the sessions."""
    ticker = normalize_ticker(values["company_abbreviation"])
    now = resolve_as_of(f"{last:%Y-%m-%d}", pd.Timestamp.now(tz="UTC"))
    raw = fetch_raw_prices(values["data_source"], ticker, values["quandl_database"], now, checks)
    prices = load_prices(raw.content, raw.resolved_source, checks=checks).prices
    before, sessions = replay_sessions(prices, first, last)
    model_name = f"{registered_model_name(ticker)}-replay-{run_id[:8]}"

    def retrain(day: pd.Timestamp) -> None:
        as_of = {AS_OF.name: f"{day:%Y-%m-%d}"}
        run_pipeline({**values, **as_of}, nested=True, model_name=model_name)

    logger.info("Training the first champion as of %s", f"{before:%Y-%m-%d}")
    retrain(before)
    with refusals_explained(f"read the registry of {experiment_label()}", "READ"):
        champions = Champions(MlflowClient(), model_name)
    return replay(prices, sessions, champions, retrain, checks.calendar, window, alpha)


@click.command(
    cls=SpecCommand,
    help="Replay the daily schedule (forecast, monitor, retrain when degraded, promotion by evidence) as "
    "of every session from START to END under one 'replay' run, with the ticker's own replay registry.",
)
@options(REPLAY_ENTRY_POINT)
def cli(
    start: str, end: str, window_forecasts: int, monitor_alpha: float, **params: str | int | float
) -> None:
    check_option(check_data_source, str(params["data_source"]), "--data-source")
    first, last = (pd.Timestamp(value).normalize() for value in (start, end))
    if first > last:
        raise click.BadParameter(f"{start} is after --end {end}", param_hint="'--start'")
    spec = {param.name: param for param in PIPELINE_PARAMS}
    values = {name: spec[name].text(value) for name, value in params.items()}
    checks = PriceChecks(**{param.name: params[param.name] for param in PRICE_CHECK_PARAMS})
    ticker = normalize_ticker(values["company_abbreviation"])
    own = {
        **values,
        "start": start,
        "end": end,
        "window_forecasts": window_forecasts,
        "monitor_alpha": monitor_alpha,
    }
    with entry_point("Replay", runs="runs"):
        with refusals_explained(f"write runs to {experiment_label()}", "EDIT"):
            use_experiment(None)
        with tracked_run(run_name_unless_chosen(REPLAY_ENTRY_POINT), own) as run:
            metrics = replay_in_run(
                run.info.run_id, values, checks, first, last, window_forecasts, monitor_alpha
            )

    click.echo(
        f"Replayed {int(metrics['sessions'])} sessions of {ticker}: realized RMSE / naive "
        f"{metrics['realized_rmse_vs_naive']:.4f}, 80% coverage {metrics['realized_coverage_80']:.3f} "
        f"(static {metrics['realized_static_coverage_80']:.3f}), 95% {metrics['realized_coverage_95']:.3f} "
        f"(static {metrics['realized_static_coverage_95']:.3f}), "
        f"{int(metrics['days_flagged'])} days flagged, {int(metrics['retrainings'])} retrainings, "
        f"{int(metrics['promotions'])} promotions, "
        f"{metrics['wall_seconds']:.0f} s"
    )


if __name__ == "__main__":
    cli()
