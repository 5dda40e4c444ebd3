"""The `blindmatch` command line (DESIGN §6): a stable contract that tests and users rely on.

Each subcommand is one `add_<command>(subparsers)` function that declares its
arguments and sets ``func`` to a `_cmd_<command>(args) -> int` handler, in the
module of its topic (`federation`, `settings`, `lists`, `sessions`, `hits`,
`audit`; what they share is in `common`); `COMMANDS` lists the registration
functions in help order. To add a command, write both functions and append
one line to `COMMANDS`. A command that shares its first word with one that
takes NODE_DIR (`hits ack` beside `hits NODE_DIR`) is registered under its two
words, e.g. ``subparsers.add_parser("hits ack", prog="blindmatch hits ack")``.

Exit codes: 0 success; 1 failure, with one line ``blindmatch: error: ...`` on
stderr (`_fail` is the only place that turns `NodeError`/`CryptoError` into
it); with ``--json``, the error is also printed on stdout as ``{"error": {"kind",
"message"}}`` (a refused ingest adds it to its result); 2 usage, from argparse;
130 interrupted, after cleaning up. SIGTERM (a supervisor, `timeout`, `kill`)
interrupts a command as Ctrl-C does, so a session it stops is recorded failed
rather than left running; `serve` installs its own handling (drain, then stop).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from crypto.errors import CryptoError
from node.cli import (
    audit,
    certificates,
    federation,
    hits,
    lists,
    sessions,
    settings,
    status,
    sweep,
    users,
)
from node.cli.common import PROG, Subparsers, json_error, one_line, print_json
from node.errors import IngestRejected, NodeError

__all__ = ["COMMANDS", "build_parser", "main"]


def _fail(exc: Exception, as_json: bool) -> int:
    """Reports a NodeError or CryptoError as one line on stderr (and JSON on stdout); returns 1."""
    print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
    if as_json and not isinstance(exc, IngestRejected):  # that one printed its result already
        print_json(json_error(exc))
    return 1


# -- demo ---------------------------------------------------------------------------------------


def add_demo(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run four agency nodes on loopback: matches, then deconflicted operations",
    )
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from node.cli.demo import main as demo

    return demo()


# -- parser and entry point ---------------------------------------------------------------------

COMMANDS: list[Callable[[Subparsers], None]] = [
    federation.add_ca,
    federation.add_init,
    certificates.add_cert,
    certificates.add_crl,
    settings.add_config,
    settings.add_peer,
    lists.add_ingest,
    lists.add_columns,
    lists.add_lists,
    lists.add_lists_drop,
    lists.add_records,
    sessions.add_serve,
    sessions.add_match,
    sweep.add_sweep,
    hits.add_hits,
    audit.add_audit,
    status.add_status,
    users.add_user,
    add_demo,
    sessions.add_epoch,
]
"""Registration functions of the subcommands, in help order; append one to add a command."""


class _Parser(argparse.ArgumentParser):
    """Reads a two-word command such as `hits ack` (registered under that name) as one word.

    `hits NODE_DIR` and `hits ack NODE_DIR HIT_ID` cannot both be argparse
    subcommands of `hits`: its first positional would have to be a command.
    """

    two_word_commands: frozenset[str] = frozenset()

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        if " ".join(words[:2]) in self.two_word_commands:
            words[:2] = [" ".join(words[:2])]
        return super().parse_known_args(words, namespace)


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser with every command of `COMMANDS` registered."""
    parser = _Parser(
        prog=PROG, description="Federated, privacy-preserving matching between agencies."
    )
    parser.add_argument("--version", action=_VersionAction)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(subparsers)
    parser.two_word_commands = frozenset(name for name in subparsers.choices if " " in name)
    return parser


def _version() -> str:
    from importlib import metadata  # reads the installed distributions: only for --version

    try:
        return metadata.version("blindmatch")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


class _VersionAction(argparse._VersionAction):
    """`--version`, with the version looked up only when it is asked for."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        self.version = f"{PROG} {_version()}"
        super().__call__(parser, namespace, values, option_string)


def _terminated(signum: int, frame: FrameType | None) -> None:
    """SIGTERM does what Ctrl-C would: asyncio.run cancels its task, else KeyboardInterrupt."""
    on_interrupt = signal.getsignal(signal.SIGINT)
    if callable(on_interrupt):
        on_interrupt(signal.SIGINT, frame)
    else:  # Ctrl-C ignored (a background job): a SIGTERM still ends the command
        raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    os.umask(0o077)  # keys, stores and configs: readable by the node's user only
    from node.setup.memory import tune_malloc

    tune_malloc()  # before any thread: sessions' buffers in few arenas (node.setup.memory)
    signal.signal(signal.SIGTERM, _terminated)
    # gRPC's core logs at INFO to stderr (e.g. "Got goaway" when a peer stops): the error
    # line is the operator's. Set before any command imports grpc; GRPC_VERBOSITY overrides.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    try:
        code: int = args.func(args)
    except (NodeError, CryptoError) as exc:
        return _fail(exc, bool(getattr(args, "json", False)))
    except KeyboardInterrupt:
        print(
            f"{PROG}: error: interrupted; an interrupted session is recorded as failed, an "
            "interrupted ingest stored nothing",
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:
        return 1
    return code
