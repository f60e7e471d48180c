"""Every bound of a declared parameter, open and closed, on it and on each side, in `check` and in click."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from flow_steps.config.errors import PipelineError
from flow_steps.config.spec import Param, SpecCommand, check_values, expand_bare_flags

CLOSED = Param("units", "int", 5, "h", low=1, high=10)
OPEN = Param("share", "float", 0.2, "h", low=0, high=0.5, low_open=True, high_open=True)
HALF_OPEN = Param("fraction", "float", 0.2, "h", low=0, high=0.5, low_open=True)
LOW_ONLY = Param("move", "float", 0.3, "h", low=0, low_open=True)


@pytest.mark.parametrize(
    ("param", "value", "allowed"),
    [
        (CLOSED, 0, False),
        (CLOSED, 1, True),
        (CLOSED, 2, True),
        (CLOSED, 9, True),
        (CLOSED, 10, True),
        (CLOSED, 11, False),
        (OPEN, 0.0, False),
        (OPEN, 0.01, True),
        (OPEN, 0.49, True),
        (OPEN, 0.5, False),
        (HALF_OPEN, 0.0, False),
        (HALF_OPEN, 0.5, True),
        (HALF_OPEN, 0.51, False),
        (LOW_ONLY, 0.0, False),
        (LOW_ONLY, 1e-9, True),
        (LOW_ONLY, 1e9, True),
    ],
)
def test_each_bound_in_check_and_in_click(param, value, allowed):
    kind = click.IntRange if param.kind == "int" else click.FloatRange
    assert isinstance(param.click_type(), kind)
    if allowed:
        param.check(value)
        assert param.click_type().convert(str(value), None, None) == value
    else:
        with pytest.raises(PipelineError, match=f"^{param.name} must be .*, got {value}$"):
            param.check(value)
        with pytest.raises(click.BadParameter):
            param.click_type().convert(str(value), None, None)


@pytest.mark.parametrize(
    ("param", "text"),
    [
        (CLOSED, "in [1, 10]"),
        (OPEN, "in (0, 0.5)"),
        (HALF_OPEN, "in (0, 0.5]"),
        (LOW_ONLY, "above 0"),
        (Param("limit", "int", 1, "h", low=1), "at least 1"),
    ],
)
def test_the_range_is_written_as_its_brackets_say(param, text):
    assert param.range_text() == text


def test_choices_and_validators_refuse_by_name():
    param = Param("mode", "string", "warn", "h", choices=("warn", "fail"))
    param.check("fail")
    with pytest.raises(PipelineError, match="^mode must be one of warn, fail, got 'stop'$"):
        param.check("stop")
    assert param.click_type().convert("warn", None, None) == "warn"
    with pytest.raises(click.BadParameter):
        param.click_type().convert("stop", None, None)

    def odd_only(value: object) -> None:
        if value % 2 == 0:
            raise PipelineError(f"even: {value}")

    checked = Param("odd", "int", 1, "h", validate=odd_only)
    checked.check(3)
    with pytest.raises(PipelineError, match="^even: 4$"):
        checked.check(4)
    check_values([checked, CLOSED], {"odd": 5, "other": 0})
    with pytest.raises(PipelineError, match="^units must be in"):
        check_values([checked, CLOSED], {"odd": 5, "units": 0})


def test_unbounded_kinds_convert_as_their_type(tmp_path):
    assert Param("n", "int", 1, "h").click_type().convert("3", None, None) == 3
    with pytest.raises(click.BadParameter):
        Param("n", "int", 1, "h").click_type().convert("3.5", None, None)
    assert Param("x", "float", 1.0, "h").click_type().convert("3.5", None, None) == 3.5
    assert Param("s", "string", "", "h").click_type().convert("3.5", None, None) == "3.5"
    assert Param("b", "bool", False, "h").click_type() is click.BOOL
    path = Param("p", "path", "a.csv", "h").click_type()
    assert path.convert(str(tmp_path / "a.csv"), None, None) == str(tmp_path / "a.csv")
    with pytest.raises(click.BadParameter):
        path.convert(str(tmp_path), None, None)  # a folder is not a file


@pytest.mark.parametrize(
    ("param", "declared"),
    [
        (Param("n", "int", None, "h"), "int"),
        (Param("n", "int", 3, "h"), "{type: int, default: 3}"),
        (Param("b", "bool", True, "h"), '{type: string, default: "true"}'),
        (Param("s", "string", "", "h"), '{type: string, default: ""}'),
        (Param("s", "string", "auto", "h"), "{type: string, default: auto}"),
        (Param("s", "string", "a/b", "h"), '{type: string, default: "a/b"}'),
        (Param("s", "string", "false", "h"), '{type: string, default: "false"}'),
    ],
)
def test_mlproject_quotes_what_yaml_would_misread(param, declared):
    assert param.mlproject_value() == declared


def test_values_are_logged_as_mlflow_writes_them():
    assert Param("b", "bool", True, "h").text(True) == "true"
    assert Param("s", "string", "A", "h").text("A") == "A"
    assert Param("max_row_limit", "int", 1, "h").flag == "--max-row-limit"
    assert Param("n", "int", None, "h").required and not CLOSED.required


@pytest.mark.parametrize(
    ("args", "expanded"),
    [
        (["--flag"], ["--flag", "true"]),
        (["--flag", "false"], ["--flag", "false"]),
        (["--flag", "NO"], ["--flag", "NO"]),
        (["--flag", "--other", "1"], ["--flag", "true", "--other", "1"]),
        (["--other", "--flag"], ["--other", "--flag", "true"]),
    ],
)
def test_a_bare_boolean_flag_means_true(args, expanded):
    assert expand_bare_flags(args, ["--flag"]) == expanded


def test_a_spec_command_reads_bare_boolean_options():
    @click.command(cls=SpecCommand)
    @click.option("--flag", type=click.BOOL, default=False)
    @click.option("--quiet", is_flag=True)
    def command(flag: bool, quiet: bool) -> None:
        click.echo(f"{flag} {quiet}")

    assert CliRunner().invoke(command, ["--flag"]).output == "True False\n"
    assert CliRunner().invoke(command, ["--flag", "false", "--quiet"]).output == "False True\n"
