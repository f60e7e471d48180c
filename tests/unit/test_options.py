"""MLproject, the click CLIs and TrainParams must agree on parameter names and defaults."""

from dataclasses import asdict

import click
import pytest
import yaml

from flow_steps import download_raw_data, forecast, register_model, train_model, transform_data
from main import cli as main_cli
from tests.conftest import PROJECT_ROOT


def mlproject_defaults(entry_point: str) -> dict[str, str | None]:
    spec = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())["entry_points"][entry_point]["parameters"]
    return {name: str(value["default"]) if isinstance(value, dict) else None for name, value in spec.items()}


def click_defaults(command: click.Command) -> dict[str, str | None]:
    return {
        param.name: None
        if param.required
        else str(param.default).lower()
        if param.type is click.BOOL
        else str(param.default)
        for param in command.params
    }


@pytest.mark.parametrize(
    ("entry_point", "command"),
    [
        ("main", main_cli),
        ("download_raw_data", download_raw_data.cli),
        ("transform_data", transform_data.cli),
        ("train_model", train_model.cli),
        ("register_model", register_model.cli),
        ("forecast", forecast.cli),
    ],
)
def test_cli_mirrors_mlproject(entry_point, command):
    cli_only = (
        {"output"} if entry_point == "forecast" else set()
    )  # optional file; `-P output=...` passes it on
    defaults = {name: value for name, value in click_defaults(command).items() if name not in cli_only}
    assert defaults == mlproject_defaults(entry_point)


def test_train_params_defaults_match_the_cli():
    defaults = {name: str(value) for name, value in asdict(train_model.TrainParams()).items()}
    assert defaults == {
        name: value for name, value in click_defaults(train_model.cli).items() if name != "stock_data"
    }


def test_every_step_parameter_can_be_set_on_main():
    step_params = set()
    for step in ("download_raw_data", "transform_data", "train_model"):
        step_params |= set(mlproject_defaults(step))
    handed_over = {"dataset_stock_csv", "stock_data"}  # artifact URIs main passes on
    assert step_params - handed_over <= set(mlproject_defaults("main"))


def test_conda_env_pins_python_311_and_the_same_packages_as_pre_requirements():
    conda = yaml.safe_load((PROJECT_ROOT / "conda.yml").read_text())
    assert "python=3.11" in conda["dependencies"]
    [pip_section] = [item for item in conda["dependencies"] if isinstance(item, dict)]
    lines = (PROJECT_ROOT / "pre_requirements.txt").read_text().splitlines()
    pins = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert sorted(pip_section["pip"]) == sorted(pins)
    assert all("==" in pin for pin in pins)
