"""Click options shared by the step CLIs and main.py: names, types, ranges, defaults and help.

They mirror MLproject's parameters in kebab case; tests/unit/test_options.py checks that the two agree.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from flow_steps.constants import DEFAULT_QUANDL_DATABASE, QUANDL_SOURCE, SAMPLE_SOURCE

positive = click.IntRange(min=1)

DOWNLOAD_OPTIONS = (
    click.option(
        "--company-abbreviation",
        default="MSFT",
        show_default=True,
        help="Ticker symbol, e.g. MSFT; names the artifact raw-data/<TICKER>.csv.",
    ),
    click.option(
        "--data-source",
        default=SAMPLE_SOURCE,
        show_default=True,
        help=f"'{SAMPLE_SOURCE}' (bundled public-domain MSFT prices, offline), '{QUANDL_SOURCE}' (Quandl / "
        "Nasdaq Data Link API, key in QUANDL_API_KEY), an http(s):// URL of a CSV file, or a CSV path.",
    ),
    click.option(
        "--quandl-database",
        default=DEFAULT_QUANDL_DATABASE,
        show_default=True,
        help=f"Quandl database of the dataset <database>/<TICKER> when data_source is '{QUANDL_SOURCE}' "
        "(WIKI, the retired free feed, or EOD).",
    ),
)
TRANSFORM_OPTIONS = (
    click.option(
        "--max-row-limit",
        default=100_000,
        show_default=True,
        type=positive,
        help="Keep at most this many of the most recent rows.",
    ),
)
TRAIN_OPTIONS = (
    click.option(
        "--lstm-units",
        default=50,
        show_default=True,
        type=positive,
        help="Units in each of the two LSTM layers.",
    ),
    click.option(
        "--window", default=60, show_default=True, type=positive, help="Days of history per forecast."
    ),
    click.option(
        "--epochs",
        default=50,
        show_default=True,
        type=positive,
        help="Most training epochs (early stopping may end sooner).",
    ),
    click.option("--batch-size", default=32, show_default=True, type=positive, help="Training batch size."),
    click.option(
        "--test-fraction",
        default=0.2,
        show_default=True,
        type=click.FloatRange(min=0, max=0.5, min_open=True),
        help="Share of the most recent days held out as the test set.",
    ),
    click.option(
        "--seed",
        default=42,
        show_default=True,
        type=int,
        help="Random seed: the same parameters and seed give the same metrics.",
    ),
    click.option(
        "--validation-fraction",
        default=0.1,
        show_default=True,
        type=click.FloatRange(min=0, max=0.5, min_open=True, max_open=True),
        help="Share of the latest training windows kept for validation (early stopping).",
    ),
    click.option(
        "--patience",
        default=5,
        show_default=True,
        type=positive,
        help="Epochs without a better validation loss before training stops (best weights are kept).",
    ),
    click.option(
        "--ma-window",
        default=5,
        show_default=True,
        type=positive,
        help="Days averaged by the moving-average baseline.",
    ),
    click.option(
        "--knn-neighbors",
        default=20,
        show_default=True,
        type=positive,
        help="Neighbours of the kNN baseline.",
    ),
    click.option(
        "--backtest-folds",
        default=0,
        show_default=True,
        type=click.IntRange(min=0),
        help="Walk-forward backtest folds over the test period (0 = the single split only).",
    ),
)


def with_options(*groups: tuple[Callable, ...]) -> Callable:
    """Decorator applying option groups so that `--help` lists them in the order given."""

    def decorate(command: Callable) -> Callable:
        for option in reversed([option for group in groups for option in group]):
            command = option(command)
        return command

    return decorate
