"""The parameter spec is the one source: MLproject, every click command and TrainParams follow it."""

import dataclasses

import pytest
import yaml
from click.testing import CliRunner

from flow_steps import (
    download_raw_data,
    forecast,
    monitor,
    register_model,
    replay,
    train_model,
    transform_data,
    universe,
)
from flow_steps.config.declarations import (
    MAX_ROW_LIMIT,
    PRICE_CHECK_PARAMS,
    TEST_FRACTION,
    TRAIN_PARAMS,
    VALIDATION_FRACTION,
)
from flow_steps.config.entry_points import BY_ENTRY_POINT, ENTRY_POINTS
from flow_steps.config.errors import PipelineError
from flow_steps.config.render import render_mlproject, render_parameters_doc
from flow_steps.config.spec import expand_bare_flags
from flow_steps.config.values import PriceChecks, TrainParams
from main import cli as main_cli
from tests.conftest import PROJECT_ROOT

COMMANDS = {
    "main": main_cli,
    "download_raw_data": download_raw_data.cli,
    "transform_data": transform_data.cli,
    "train_model": train_model.cli,
    "register_model": register_model.cli,
    "forecast": forecast.cli,
    "universe": universe.cli,
    "monitor": monitor.cli,
    "replay": replay.cli,
}


def mlproject() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())["entry_points"]


def declared(value: dict | str) -> tuple[str, str | None]:
    """(type, default as a string) of one MLproject parameter; a bare type is a required parameter."""
    if isinstance(value, str):
        return value, None
    return value["type"], str(value["default"])


def spec_declared(entry_point: str) -> dict[str, tuple[str, str | None]]:
    params = BY_ENTRY_POINT[entry_point].params
    return {
        param.name: (
            param.kind if param.required else ("string" if param.kind == "bool" else param.kind),
            None
            if param.required
            else str(param.default).lower()
            if param.kind == "bool"
            else str(param.default),
        )
        for param in params
    }


def test_every_entry_point_has_a_command():
    assert set(mlproject()) == set(BY_ENTRY_POINT) == set(COMMANDS)


@pytest.mark.parametrize("entry_point", sorted(COMMANDS))
def test_mlproject_declares_the_spec_names_types_and_defaults(entry_point):
    parameters = mlproject()[entry_point]["parameters"]
    assert {name: declared(value) for name, value in parameters.items()} == spec_declared(entry_point)


@pytest.mark.parametrize("entry_point", sorted(COMMANDS))
def test_mlproject_passes_every_parameter_to_its_command(entry_point):
    command = mlproject()[entry_point]["command"]
    for param in BY_ENTRY_POINT[entry_point].params:
        assert f"{param.flag} {{{param.name}}}" in command


def test_mlproject_is_exactly_what_the_spec_generates():
    assert (PROJECT_ROOT / "MLproject").read_text() == render_mlproject(), (
        "run python -m flow_steps.parameters"
    )


def test_the_parameters_page_is_exactly_what_the_spec_generates():
    assert (PROJECT_ROOT / "docs" / "parameters.md").read_text() == render_parameters_doc(), (
        "run python -m flow_steps.parameters"
    )


@pytest.mark.parametrize("entry_point", sorted(COMMANDS))
def test_each_command_takes_the_spec_options(entry_point):
    options = {param.name: param for param in COMMANDS[entry_point].params}
    spec = BY_ENTRY_POINT[entry_point].params
    # `python main.py` alone also names its run and experiment (`mlflow run` has its own options for
    # both), and takes the universe run it is part of (hidden: the universe passes it).
    cli_only = ["run_name", "universe_run_id", "experiment_name"] if entry_point == "main" else []
    assert list(options) == [param.name for param in spec] + cli_only
    for param in spec:
        option = options[param.name]
        assert option.opts == [param.flag]
        assert option.required == param.required
        assert option.default == param.default


def test_main_takes_every_step_parameter_but_the_artifacts_it_hands_over():
    step_params = {
        param.name
        for name in ("download_raw_data", "transform_data", "train_model")
        for param in BY_ENTRY_POINT[name].params
    }
    assert step_params - {"dataset_stock_csv", "stock_data"} <= {
        param.name for param in BY_ENTRY_POINT["main"].params
    }


def test_train_params_are_the_spec_with_its_defaults():
    assert dataclasses.asdict(TrainParams()) == {param.name: param.default for param in TRAIN_PARAMS}


def test_each_parameter_is_declared_once():
    for entry_point in ENTRY_POINTS:
        names = [param.name for param in entry_point.params]
        assert len(names) == len(set(names)), entry_point.name


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        (TEST_FRACTION, 0.0, r"test_fraction must be in \(0, 0.5\], got 0.0"),
        (TEST_FRACTION, 0.6, r"test_fraction must be in \(0, 0.5\], got 0.6"),
        (VALIDATION_FRACTION, 0.5, r"validation_fraction must be in \(0, 0.5\), got 0.5"),
        (MAX_ROW_LIMIT, 0, "max_row_limit must be at least 1, got 0"),
    ],
)
def test_range_checks_name_the_parameter(param, value, message):
    with pytest.raises(PipelineError, match=message):
        param.check(value)
    param.check(param.default)


def test_click_refuses_the_same_ranges():
    result = CliRunner().invoke(train_model.cli, ["--stock-data", "x.csv", "--test-fraction", "0.7"])
    assert result.exit_code == 2
    assert "Invalid value for '--test-fraction': 0.7 is not in the range 0<x<=0.5" in result.output


# What the entry points import at run time, by their distribution names.
RUNTIME_PACKAGES = {
    "mlflow",
    "tensorflow-cpu",
    "keras",
    "pandas",
    "numpy",
    "scikit-learn",
    "scipy",
    "statsforecast",
    "exchange-calendars",
    "quandl",
    "yfinance",
    "click",
    "matplotlib",
    "requests",
    "psycopg",
    "psycopg-binary",
    "ray[default]",
}


def test_conda_env_pins_python_311_and_what_runs_with_the_pins_of_pre_requirements():
    conda = yaml.safe_load((PROJECT_ROOT / "conda.yml").read_text())
    assert "python=3.11" in conda["dependencies"]
    [pip_section] = [item for item in conda["dependencies"] if isinstance(item, dict)]
    lines = (PROJECT_ROOT / "pre_requirements.txt").read_text().splitlines()
    pins = {line.split("==")[0]: line.strip() for line in lines if "==" in line and not line.startswith("#")}
    assert {pin.split("==")[0] for pin in pip_section["pip"]} == RUNTIME_PACKAGES
    assert all(pins[pin.split("==")[0]] == pin for pin in pip_section["pip"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--reuse-training"], ["--reuse-training", "true"]),
        (["--reuse-training", "--epochs", "1"], ["--reuse-training", "true", "--epochs", "1"]),
        (["--reuse-training", "False"], ["--reuse-training", "False"]),
        (["--epochs", "1", "--reuse-training", "yes"], ["--epochs", "1", "--reuse-training", "yes"]),
        (["--run-name", "--reuse-training"], ["--run-name", "--reuse-training", "true"]),
    ],
)
def test_a_boolean_option_given_alone_means_true(args, expected):
    assert expand_bare_flags(args, ["--reuse-training"]) == expected


@pytest.mark.parametrize(
    ("args", "reuse", "register"),
    [
        ([], False, True),
        (["--reuse-training"], True, True),
        (["--reuse-training", "--register-model", "false"], True, False),
        (["--reuse-training", "false", "--register-model"], False, True),
    ],
)
def test_main_accepts_boolean_options_alone_or_with_a_value(args, reuse, register):
    context = main_cli.make_context("main", list(args))
    assert (context.params["reuse_training"], context.params["register_model"]) == (reuse, register)


@pytest.mark.parametrize(
    ("values_class", "params"), [(TrainParams, TRAIN_PARAMS), (PriceChecks, PRICE_CHECK_PARAMS)]
)
def test_the_values_classes_are_the_declared_parameters(values_class, params):
    """Field by field, in order: the name, the type and the default of the declared parameter."""
    fields = dataclasses.fields(values_class)
    assert [field.name for field in fields] == [param.name for param in params]
    assert [field.type for field in fields] == [param.python_type.__name__ for param in params]
    assert [field.default for field in fields] == [param.default for param in params]
