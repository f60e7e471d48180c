"""The parameter spec's framework: a parameter, an entry point, and the click glue that reads them.

The declarations (config/declarations.py) and the entry points (config/entry_points.py) are written
with it; the click options, the range checks, MLproject and docs/parameters.md are derived from them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import click

from flow_steps.config.errors import PipelineError

PYTHON_TYPES = {"string": str, "path": str, "int": int, "float": float, "bool": bool}


@dataclass(frozen=True)
class Param:
    """One parameter. `kind` is an MLproject type (string, path, int, float) or bool.

    `default=None` makes it required. `low`/`high` bound numbers; `low_open`/`high_open` exclude the bound.
    `validate` refuses other bad values with a PipelineError (a calendar code, say).
    """

    name: str
    kind: str
    default: str | int | float | bool | None
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    validate: Callable[[object], None] | None = None

    @property
    def flag(self) -> str:
        """The command-line option: `max_row_limit` -> `--max-row-limit`."""
        return "--" + self.name.replace("_", "-")

    @property
    def python_type(self) -> type:
        return PYTHON_TYPES[self.kind]

    @property
    def required(self) -> bool:
        return self.default is None

    def text(self, value: object) -> str:
        """A value as MLflow logs it: `true`/`false` for booleans, str() otherwise."""
        return str(value).lower() if self.kind == "bool" else str(value)

    def click_type(self) -> click.ParamType:
        if self.kind == "path":
            return click.Path(dir_okay=False)
        if self.kind == "bool":
            return click.BOOL
        if self.choices:
            return click.Choice(self.choices)
        if self.kind in ("int", "float") and (self.low is not None or self.high is not None):
            bounded = click.IntRange if self.kind == "int" else click.FloatRange
            return bounded(self.low, self.high, min_open=self.low_open, max_open=self.high_open)
        return click.types.convert_type(self.python_type)

    def check(self, value: object) -> None:
        """Refuse a value outside the allowed range or choices, naming the parameter."""
        if self.choices and value not in self.choices:
            raise PipelineError(f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise PipelineError(f"{self.name} must be {self.range_text()}, got {value}")
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise PipelineError(f"{self.name} must be {self.range_text()}, got {value}")
        if self.validate is not None:
            self.validate(value)

    def click_callback(self, context: click.Context, option: click.Parameter, value: object) -> object:
        """`check` as click's callback: a bad value is a usage error (exit 2) before anything starts."""
        if value is not None:
            try:
                self.check(value)
            except PipelineError as error:
                raise click.BadParameter(str(error), context, option) from error
        return value

    def range_text(self) -> str:
        if self.high is None:
            return f"{'above' if self.low_open else 'at least'} {self.low:g}"
        return (
            f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        )

    def mlproject_value(self) -> str:
        """The parameter as MLproject declares it."""
        if self.required:
            return self.kind
        kind = "string" if self.kind == "bool" else self.kind
        default = str(self.default).lower() if self.kind == "bool" else self.default
        if isinstance(default, str) and (default in ("", "true", "false") or not default.isalnum()):
            default = f'"{default}"'
        return f"{{type: {kind}, default: {default}}}"


def significance_level(name: str, help_text: str, default: float = 0.05) -> Param:
    """A statistical test's level (alpha), in (0, 0.5]."""
    return Param(name, "float", default, help_text, low=0, high=0.5, low_open=True)


@dataclass(frozen=True)
class EntryPoint:
    """An MLproject entry point: its command and its parameters, in command-line order."""

    name: str
    command: str
    params: tuple[Param, ...]
    comment: str = ""


BOOLEAN_WORDS = frozenset(
    word for pair in ("true/false", "1/0", "yes/no", "y/n", "on/off", "t/f") for word in pair.split("/")
)


def expand_bare_flags(args: list[str], boolean_flags: Iterable[str]) -> list[str]:
    """`--reuse-training` given alone means `--reuse-training true`; a value after it is kept.

    Boolean parameters take a value (MLproject passes `--reuse-training false`), yet read like flags.
    """
    flags, expanded = set(boolean_flags), []
    for position, arg in enumerate(args):
        expanded.append(arg)
        following = args[position + 1] if position + 1 < len(args) else None
        if arg in flags and (following is None or following.lower() not in BOOLEAN_WORDS):
            expanded.append("true")
    return expanded


class SpecCommand(click.Command):
    """A click command whose boolean options (`--flag true|false`) may also be given alone."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        boolean_flags = [
            flag
            for option in self.params
            if isinstance(option, click.Option) and option.type is click.BOOL and not option.is_flag
            for flag in option.opts
        ]
        return super().parse_args(ctx, expand_bare_flags(args, boolean_flags))


def check_values(params: Iterable[Param], values: dict[str, object]) -> None:
    """Range-check `values` (name -> value) against their parameters."""
    for param in params:
        if param.name in values:
            param.check(values[param.name])
