"""`sweep`: mutual sessions of operations lists with every peer whose policy allows them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from node.cli.common import PROG, Subparsers, operator_name, print_json
from node.cli.progress import Bars, wanted
from node.cli.sessions import add_executor_option


def add_sweep(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run mutual sessions of operations lists with every peer allowed to match them",
        description=(
            "Runs one mutual session per (list, peer): every operations list (or --list) with "
            "every peer (or --peer) whose policy allows the list and the mutual mode, the "
            "peer's list of the same name, a few sessions at once. Prints one line per (list, "
            "peer) as each ends. Exit status: 0 if every session succeeded, 1 if any failed "
            "(the others still ran) or there was nothing to sweep, 130 if interrupted (the "
            "sessions running are recorded failed)."
        ),
    )
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument(
        "--list",
        action="append",
        dest="lists",
        metavar="NAME",
        help="an operations list to sweep (repeatable; default: every operations list)",
    )
    p.add_argument(
        "--peer",
        action="append",
        dest="peers",
        metavar="ID",
        help="a peer to sweep with (repeatable; default: every peer whose policy allows it)",
    )
    p.add_argument("--purpose", required=True, help="why the sweep is made (audited)")
    p.add_argument("--operator", help="who runs the sweep (default: the OS user)")
    p.add_argument(
        "--timeout", type=float, default=600.0, help="deadline of each session in seconds"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print [{"list", "peer", "session_id", "match_count", "error"}] at the end',
    )
    add_executor_option(p)
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    import asyncio

    from node.errors import ConfigError
    from node.setup.config import NodeConfig
    from node.setup.context import NodeContext
    from node.setup.executor import executor_choice, open_runner

    if args.timeout <= 0:
        raise ConfigError("--timeout must be a positive number of seconds")
    config = NodeConfig.load(args.node_dir)
    # Forked (local) or connected (Dask) before any gRPC object exists. A Dask scheduler that
    # cannot be reached fails each session at its first batch, recorded and audited.
    pool, runner = open_runner(config, executor_choice(config, args.executor), strict=False)
    try:
        from node.jobs.sweeps import Pair, SweepResult, sweep
        from node.sessions.results import Progress

        node = NodeContext.load(args.node_dir, runner)
        bars = Bars("sweep", enabled=wanted(args.json))
        done: list[SweepResult] = []

        def progress(pair: Pair) -> Progress:
            return lambda stage, n, total: bars(f"{pair} {stage}", n, total)

        def arrived(result: SweepResult) -> None:
            done.append(result)
            if not args.json:
                print(result.line(), flush=True)

        async def run() -> list[SweepResult]:
            try:
                return await sweep(
                    node,
                    args.lists,
                    args.peers,
                    purpose=args.purpose,
                    operator=operator_name(args),
                    timeout=args.timeout,
                    progress=progress,
                    on_result=arrived,
                )
            except asyncio.CancelledError:
                # Ctrl-C (asyncio.run cancels this task): the running sessions are recorded
                # failed. Drop the batches still queued, so that no thread of the loop waits
                # for them before asyncio.run can return.
                pool.shutdown(wait=False, cancel_futures=True)
                raise

        with bars:
            results = asyncio.run(run())
    finally:
        pool.shutdown(cancel_futures=True)
    if args.json:
        print_json([r.to_json() for r in results])
    failed = sum(1 for r in results if not r.ok)
    if failed:
        print(
            f"{PROG}: error: {failed} of {len(results)} session(s) of the sweep failed (see "
            "each line's reason); the others completed",
            file=sys.stderr,
        )
        return 1
    return 0
