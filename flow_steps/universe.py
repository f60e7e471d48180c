"""The pipeline for many tickers at once, on Ray: one run `universe`, each ticker's pipeline its child.

    python -m flow_steps.universe --tickers MSFT,AAPL,NVDA --data-source 'prices/WIKI-{ticker}.csv'
    mlflow run . -e universe --env-manager local -P tickers=@watchlist.txt -P data_source=quandl

Each ticker runs the pipeline of `python main.py` (its driver, every pipeline parameter, the same reuse
rules) as a child of the `universe` run: inside a long-lived Ray worker (`executor=in-worker`, the
default) or as its own processes (`executor=process`; orchestration/workers.py). A local Ray instance
with `max_parallel` CPUs is started unless RAY_ADDRESS (or --ray-address) names a cluster; then the
project travels to the workers as Ray's runtime environment (`working_dir`). A ticker that fails,
fails alone; the summary (`universe/summary.csv`, a chart and metrics) is logged either way, and the
command exits 1 when any ticker failed.
"""

from __future__ import annotations

import logging
import os
import sys

import click
import mlflow

from flow_steps.config.declarations import PIPELINE_PARAMS
from flow_steps.config.entry_points import check_option, options
from flow_steps.config.errors import PipelineError
from flow_steps.config.names import (
    DEFAULT_EXPERIMENT,
    TICKER_COLUMN,
    UNIVERSE_ENTRY_POINT,
)
from flow_steps.config.spec import SpecCommand
from flow_steps.data.sources import source_for
from flow_steps.data.tickers import parse_tickers
from flow_steps.orchestration.cluster import (
    check_cluster_answers,
    check_reachable_store,
    check_universe,
    cluster_address,
)
from flow_steps.orchestration.fan_out import run_universe
from flow_steps.orchestration.pacing import source_pace
from flow_steps.runtime.lifecycle import entry_point, refusals_explained, tracked_run
from flow_steps.runtime.tracking import (
    RUN_ID_VARIABLE,
    experiment_label,
    run_name_unless_chosen,
)

logger = logging.getLogger(__name__)

EXPERIMENT_VARIABLES = (RUN_ID_VARIABLE, "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")


@click.command(
    cls=SpecCommand,
    help="Run the pipeline (download, transform, train, register, with main's reuse rules) for every "
    "ticker, on Ray, as child runs of one 'universe' run that logs universe/summary.csv, a chart and "
    "metrics. Exits 1 when any ticker failed.",
)
@options(UNIVERSE_ENTRY_POINT)
def cli(
    tickers: str,
    max_parallel: int,
    requests_per_minute: float,
    executor: str,
    ray_address: str,
    **params: str | int | float | bool,
) -> None:
    try:
        ticker_list = parse_tickers(tickers)
    except PipelineError as error:
        raise click.BadParameter(str(error), param_hint="'--tickers'") from error
    address = cluster_address(ray_address)
    check_option(
        lambda source: check_universe(ticker_list, source, address),
        str(params["data_source"]),
        "--data-source",
    )
    spec = {param.name: param for param in PIPELINE_PARAMS}
    values = {name: spec[name].text(value) for name, value in params.items()}
    cluster_checks = (
        lambda: check_reachable_store(address, mlflow.get_tracking_uri()),
        lambda: address is None or check_cluster_answers(address),
    )
    with entry_point("Universe", runs="runs", checks=cluster_checks):
        with refusals_explained(f"write runs to {experiment_label()}", "EDIT"):
            if not any(os.environ.get(name) for name in EXPERIMENT_VARIABLES):
                mlflow.set_experiment(DEFAULT_EXPERIMENT)
        own = {
            **values,
            "tickers": tickers,
            "max_parallel": str(max_parallel),
            "requests_per_minute": str(requests_per_minute),
            "executor": executor,
        }
        ray_tag = {"ray_address": address or "local"}
        with tracked_run(run_name_unless_chosen(UNIVERSE_ENTRY_POINT), own, ray_tag):
            pace = source_pace(requests_per_minute, source_for(values["data_source"]).requests_per_minute)
            summary = run_universe(ticker_list, values, max_parallel, address, executor, pace)
        click.echo(summary.drop(columns=["run_id"]).to_string(index=False))
    failed = int((summary["status"] != "FINISHED").sum())
    if failed:
        logger.error(
            "%d of %d tickers failed: %s",
            failed,
            len(summary),
            ", ".join(summary.loc[summary["status"] != "FINISHED", TICKER_COLUMN]),
        )
        sys.exit(1)


if __name__ == "__main__":
    cli()
