"""The `blindmatch` command (DESIGN §6), its tables and the demo."""

from node.cli.main import main

__all__ = ["main"]
