"""MLproject and docs/parameters.md, rendered from the parameter spec (flow_steps/config/spec.py)."""

from __future__ import annotations

from flow_steps.config.entry_points import ENTRY_POINTS
from flow_steps.config.names import PROJECT_ROOT
from flow_steps.config.spec import Param

MLPROJECT_PATH = PROJECT_ROOT / "MLproject"
PARAMETERS_DOC_PATH = PROJECT_ROOT / "docs" / "parameters.md"

MLPROJECT_HEADER = """\
# Generated from flow_steps/config/spec.py by `python -m flow_steps.parameters`: edit that file, not this one.
name: stock-market-prediction

# `mlflow run .` builds this environment with conda; without conda use
# `mlflow run . --env-manager local` (current environment) or `--env-manager uv`.
conda_env: conda.yml

entry_points:
"""


def render_mlproject() -> str:
    """MLproject's text, from ENTRY_POINTS."""
    blocks = []
    for entry_point in ENTRY_POINTS:
        lines = [f"  {entry_point.name}:"]
        if entry_point.comment:
            lines.append(f"    # {entry_point.comment}")
        lines.append("    parameters:")
        lines += [f"      {param.name}: {param.mlproject_value()}" for param in entry_point.params]
        lines += ["    command: >-", f"      {entry_point.command}"]
        lines += [f"      {param.flag} {{{param.name}}}" for param in entry_point.params]
        blocks.append("\n".join(lines) + "\n")
    return MLPROJECT_HEADER + "\n".join(blocks)


PARAMETERS_DOC_HEADER = """\
<!-- Generated from flow_steps/config/spec.py by `python -m flow_steps.parameters`: edit that file. -->
# Parameters

Every parameter is a `-P name=value` of `mlflow run . -e <entry point>` and a `--kebab-case` option of
`python main.py` or `python -m flow_steps.<entry point>`. Each is declared once, in
`flow_steps/config/spec.py`: the click options, the driver's per-step lists, the range checks, MLproject
and this page come from it. `main` takes every step's parameters; `universe` takes `main`'s for each
ticker.
"""


def _default_text(param: Param) -> str:
    return (
        "(required)"
        if param.required
        else f"`{param.text(param.default)}`"
        if param.default != ""
        else "(none)"
    )


def _allowed_text(param: Param) -> str:
    if param.choices:
        return ", ".join(f"`{choice}`" for choice in param.choices)
    if param.low is not None or param.high is not None:
        return param.range_text()
    return ""


def _cell(text: str) -> str:
    """Text for a Markdown table cell: a `|` would end the cell, a `<TICKER>` would read as HTML."""
    return text.replace("|", "\\|").replace("<", "&lt;")


def render_parameters_doc() -> str:
    """docs/parameters.md's text: one table per entry point, from ENTRY_POINTS."""
    sections = [PARAMETERS_DOC_HEADER]
    for entry_point in ENTRY_POINTS:
        lines = [f"## {entry_point.name}", "", f"`{entry_point.command}`", ""]
        lines += ["| parameter | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        lines += [
            f"| `{param.name}` | {param.kind} | {_default_text(param)} | {_allowed_text(param)} | "
            f"{_cell(param.help)} |"
            for param in entry_point.params
        ]
        sections.append("\n".join(lines) + "\n")
    return "\n".join(sections)


GENERATED = {MLPROJECT_PATH: render_mlproject, PARAMETERS_DOC_PATH: render_parameters_doc}
