"""The pipeline, as `python main.py` and MLproject's `main` entry point.

download_raw_data -> raw-data/<TICKER>.csv -> transform_data -> transformed-data/prices.csv -> train_model
-> runs:/<run id>/model -> register_model (Model Registry: stock-<TICKER>-lstm, aliases challenger/champion).
The driver itself is flow_steps/pipeline.py; this file is its command line.
"""

from __future__ import annotations

import logging
import sys

import click

from flow_steps.constants import MAIN_ENTRY_POINT
from flow_steps.errors import PipelineError
from flow_steps.masking import one_line
from flow_steps.parameters import options
from flow_steps.pipeline import run_pipeline
from flow_steps.sources import check_data_source
from flow_steps.step_run import check_option, configure_logging

logger = logging.getLogger("main")


@click.command(
    help="Run the pipeline download_raw_data -> transform_data -> train_model -> register_model as "
    "child runs of one MLflow run. Finished download and transform runs with the same parameters and "
    "code version are reused; training always runs unless --reuse-training is given."
)
@options(MAIN_ENTRY_POINT)
def cli(reuse_training: bool, register_model: bool, **params: str | int | float) -> None:
    configure_logging()
    check_option(check_data_source, str(params["data_source"]), "--data-source")  # before anything is logged
    try:
        run_pipeline({name: str(value) for name, value in params.items()}, reuse_training, register_model)
    except PipelineError as error:
        logger.error("Pipeline failed: %s", one_line(error))
        sys.exit(1)


if __name__ == "__main__":
    cli()
