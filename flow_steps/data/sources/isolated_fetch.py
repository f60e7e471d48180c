"""A Yahoo Finance fetch in a process of its own (why: yahoo.py's `YahooSource.fetch`).

    python -m flow_steps.data.sources.isolated_fetch TICKER [END]

writes the ticker's price CSV to stdout and exits 0; a refusal is its last stderr line, exit REFUSED_EXIT.
"""

from __future__ import annotations

import logging
import sys

from flow_steps.config.errors import SourceError
from flow_steps.data.sources.yahoo import REFUSED_EXIT, fetch_here


def main(arguments: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    ticker, end = arguments[0], (arguments[1] if len(arguments) > 1 and arguments[1] else None)
    try:
        content = fetch_here(ticker, end)
    except SourceError as error:
        print(str(error), file=sys.stderr)
        return REFUSED_EXIT
    sys.stdout.buffer.write(content)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
