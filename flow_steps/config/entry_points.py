"""The entry points of MLproject and their parameters, in command-line order; their click options."""

from __future__ import annotations

from collections.abc import Callable

import click

from flow_steps.config.declarations import (
    AS_OF,
    COMPANY_ABBREVIATION,
    CRASH_RETRIES,
    DATASET_STOCK_CSV,
    DOWNLOAD_PARAMS,
    FAIL_ON_DEGRADATION,
    HORIZON,
    MODEL,
    MODEL_NAME,
    MODEL_URI,
    MONITOR_ALPHA,
    OUTPUT,
    PIPELINE_PARAMS,
    PROMOTION_PARAMS,
    REGISTER_MODEL,
    REPLAY_END,
    REPLAY_START,
    REUSE_TRAINING,
    STOCK_DATA,
    TEST_FRACTION,
    TRAIN_PARAMS,
    TRANSFORM_PARAMS,
    WINDOW_FORECASTS,
)
from flow_steps.config.errors import PipelineError
from flow_steps.config.names import (
    DOWNLOAD_STEP,
    FORECAST_ENTRY_POINT,
    MAIN_ENTRY_POINT,
    MONITOR_ENTRY_POINT,
    REGISTER_STEP,
    REPLAY_ENTRY_POINT,
    TRAIN_STEP,
    TRANSFORM_STEP,
    UNIVERSE_ENTRY_POINT,
)
from flow_steps.config.ray_params import EXECUTOR, MAX_PARALLEL, RAY_ADDRESS, REQUESTS_PER_MINUTE, TICKERS
from flow_steps.config.spec import EntryPoint

ENTRY_POINTS = (
    EntryPoint(DOWNLOAD_STEP, f"python -m flow_steps.{DOWNLOAD_STEP}", DOWNLOAD_PARAMS),
    EntryPoint(
        TRANSFORM_STEP, f"python -m flow_steps.{TRANSFORM_STEP}", (DATASET_STOCK_CSV, *TRANSFORM_PARAMS)
    ),
    EntryPoint(TRAIN_STEP, f"python -m flow_steps.{TRAIN_STEP}", (STOCK_DATA, *TRAIN_PARAMS)),
    EntryPoint(
        REGISTER_STEP,
        f"python -m flow_steps.{REGISTER_STEP}",
        (MODEL_URI, STOCK_DATA, TEST_FRACTION, MODEL_NAME, *PROMOTION_PARAMS),
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
        (*DOWNLOAD_PARAMS, WINDOW_FORECASTS, MONITOR_ALPHA, FAIL_ON_DEGRADATION),
        comment="Scores the ticker's logged forecasts against the closes data_source now has.",
    ),
    EntryPoint(
        MAIN_ENTRY_POINT,
        "python main.py",
        (*PIPELINE_PARAMS, CRASH_RETRIES),
        comment="The whole pipeline; every step parameter can be set here.",
    ),
    EntryPoint(
        REPLAY_ENTRY_POINT,
        f"python -m flow_steps.{REPLAY_ENTRY_POINT}",
        (
            REPLAY_START,
            REPLAY_END,
            *(param for param in PIPELINE_PARAMS if param not in (AS_OF, REUSE_TRAINING, REGISTER_MODEL)),
            WINDOW_FORECASTS,
            MONITOR_ALPHA,
        ),
        comment="The daily schedule (forecast, monitor, retrain when degraded) as of every session from "
        "start to end, under one run.",
    ),
    EntryPoint(
        UNIVERSE_ENTRY_POINT,
        f"python -m flow_steps.{UNIVERSE_ENTRY_POINT}",
        (
            TICKERS,
            *(param for param in PIPELINE_PARAMS if param is not COMPANY_ABBREVIATION),
            MAX_PARALLEL,
            REQUESTS_PER_MINUTE,
            EXECUTOR,
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
                callback=param.click_callback if param.validate else None,
            )(command)
        return command

    return decorate


def check_option(check: Callable[[str], None], value: str, flag: str) -> None:
    """Run `check(value)` before any run starts; its PipelineError becomes click's usage error (exit 2)."""
    try:
        check(value)
    except PipelineError as error:
        raise click.BadParameter(str(error), param_hint=f"'{flag}'") from error
