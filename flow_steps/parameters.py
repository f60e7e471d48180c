"""Write MLproject and docs/parameters.md from the parameter spec, or check that they match it.

python -m flow_steps.parameters            # after changing flow_steps/config/declarations.py
python -m flow_steps.parameters --check    # exit 1 when either file differs from the spec
"""

from __future__ import annotations

import sys

import click

from flow_steps.config.render import GENERATED


@click.command(help="Write MLproject and docs/parameters.md from the spec, or with --check only compare.")
@click.option("--check", is_flag=True, help="Exit 1 when either file differs from the spec; write nothing.")
def cli(check: bool) -> None:
    for path, render in GENERATED.items():
        text = render()
        if check:
            if path.read_text() != text:
                click.echo(f"{path} differs from flow_steps/config/: run python -m flow_steps.parameters")
                sys.exit(1)
            continue
        path.write_text(text)
        click.echo(f"Wrote {path}")


if __name__ == "__main__":
    cli()
