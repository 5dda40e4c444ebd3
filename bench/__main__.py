"""`make bench`: every benchmark in one run, printed as Markdown tables for the README.

`python -m bench [NAME ...]` runs only the named sections. The sections share one
process pool, started here before any section creates a gRPC object.
"""

from __future__ import annotations

import importlib
import sys

from bench.common import shared_runner, shutdown_shared_runner

SECTIONS = ["psi", "ingest", "screening", "federation", "load", "hits", "sweeps", "api", "scale"]


def main(argv: list[str]) -> None:
    unknown = [name for name in argv if name not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown section(s) {', '.join(unknown)}; choose from {SECTIONS}")
    shared_runner()  # forked now: before any gRPC channel or server exists in this process
    try:
        for name in argv or SECTIONS:
            importlib.import_module(f"bench.{name}").main()
    finally:
        shutdown_shared_runner()


if __name__ == "__main__":
    main(sys.argv[1:])
