"""`make bench`: every benchmark in one run, printed as Markdown tables for the README.

`python -m bench [NAME ...]` runs only the named sections.
"""

from __future__ import annotations

import importlib
import sys

SECTIONS = ["psi", "ingest", "screening", "federation", "load"]


def main(argv: list[str]) -> None:
    for name in argv or SECTIONS:
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main(sys.argv[1:])
