"""The pipeline, as `python main.py` and MLproject's `main` entry point.

download_raw_data -> raw-data/<TICKER>.csv -> transform_data -> transformed-data/prices.csv -> train_model
-> runs:/<run id>/model -> register_model (Model Registry: stock-<TICKER>-lstm, aliases challenger/champion).
The driver itself is flow_steps/orchestration/driver.py; this file is its command line.
"""

from __future__ import annotations

import logging

import click

from flow_steps.config.entry_points import check_option, options
from flow_steps.config.names import DEFAULT_EXPERIMENT, MAIN_ENTRY_POINT
from flow_steps.config.spec import SpecCommand
from flow_steps.data.sources import check_data_source
from flow_steps.orchestration.driver import run_pipeline
from flow_steps.runtime.interruption import end_with_parent
from flow_steps.runtime.lifecycle import entry_point, refusals_explained
from flow_steps.runtime.tracking import experiment_label, use_experiment

logger = logging.getLogger("main")


@click.command(
    cls=SpecCommand,
    help="Run the pipeline download_raw_data -> transform_data -> train_model -> register_model as "
    "child runs of one MLflow run. Finished download and transform runs with the same parameters and "
    "code version are reused; training always runs unless --reuse-training is given (alone, or "
    "with true/false).",
)
@options(MAIN_ENTRY_POINT)
@click.option(
    "--run-name",
    default=None,
    help="Name of the pipeline's run (default: the ticker and the parameters that differ from their "
    "defaults, e.g. 'MSFT lstm_units=60'). Under `mlflow run`, use its own --run-name.",
)
@click.option(
    "--universe-run-id", default=None, hidden=True, help="The universe run this pipeline is part of."
)
@click.option(
    "--experiment-name",
    default=None,
    help=f"MLflow experiment to log to (default: $MLFLOW_EXPERIMENT_NAME, else {DEFAULT_EXPERIMENT}). "
    "Under `mlflow run`, use its own --experiment-name.",
)
def cli(
    reuse_training: bool,
    register_model: bool,
    crash_retries: int,
    run_name: str | None,
    experiment_name: str | None,
    universe_run_id: str | None,
    **params: str | int | float,
) -> None:
    check_option(check_data_source, str(params["data_source"]), "--data-source")  # before anything is logged
    if universe_run_id:  # a universe's ticker: stop with the Ray worker that runs it
        end_with_parent()
    with entry_point("Pipeline", runs="runs"):
        with refusals_explained(f"write runs to {experiment_label()}", "EDIT"):
            use_experiment(experiment_name)
        values = {name: str(value) for name, value in params.items()}
        run_pipeline(
            values, reuse_training, register_model, run_name, universe_run_id, crash_retries=crash_retries
        )


if __name__ == "__main__":
    cli()
