"""Execute the analysis notebook top to bottom, save it with its outputs and export HTML beside it.

python data_analysis/run_notebook.py                          # the full run, a few minutes
    STOCK_NOTEBOOK_FAST=1 python data_analysis/run_notebook.py --output /tmp/quick.ipynb  # quick pass
"""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

NOTEBOOK = Path(__file__).resolve().parent / "stock_market_analysis.ipynb"
logger = logging.getLogger("run_notebook")


def execute(notebook: nbformat.NotebookNode, folder: Path, timeout: int = 1800) -> nbformat.NotebookNode:
    """Run every cell in a fresh python3 kernel started in `folder`; raises on the first error."""
    NotebookClient(
        notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    return notebook


NOISE = re.compile(
    r"^(?:[IWE]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl"
    r"|To enable the following instructions|WARNING:tensorflow:|\[IPKernelApp\]|$)"
)


def drop_runtime_noise(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove stream outputs made only of TensorFlow's C++ start-up and retracing log lines."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [
                output
                for output in cell.outputs
                if not (
                    output.output_type == "stream"
                    and all(NOISE.match(line) for line in output.text.splitlines())
                )
            ]
    return notebook


OBJECT_REPR = re.compile(r"^<[^>]* at 0x[0-9a-f]+>$")  # e.g. <pandas.io.formats.style.Styler at 0x7f...>


def drop_volatile_metadata(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove what changes at every run although no result did: per-cell execution timestamps, and
    plain-text object reprs with memory addresses beside a rich (HTML) view of the same output.

    Cell ids are kept as read, execution counts run 1..n, and the tables name themselves
    (`Styler.set_uuid`), so regenerating an unchanged notebook gives the same file: a diff means a
    result changed.
    """
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/html" in data and OBJECT_REPR.match(str(data.get("text/plain", "")).strip()):
                del data["text/plain"]
    return notebook


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=NOTEBOOK, help="where to save the executed notebook")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML export")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    executed = execute(nbformat.read(NOTEBOOK, as_version=4), NOTEBOOK.parent)
    notebook = drop_volatile_metadata(drop_runtime_noise(executed))
    nbformat.write(notebook, arguments.output)
    logger.info("Executed %s, saved %s", NOTEBOOK, arguments.output)
    if not arguments.no_html:
        html, _ = HTMLExporter().from_notebook_node(notebook)
        target = arguments.output.with_suffix(".html")
        target.write_text(html, encoding="utf-8")
        logger.info("Exported %s", target)


if __name__ == "__main__":
    main()
