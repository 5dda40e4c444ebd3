"""`serve`, `match` and `epoch rotate`: sessions with peers."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from node.cli.common import (
    Subparsers,
    operator_name,
)
from node.cli.progress import Bars, wanted
from node.cli.tables import format_table
from node.errors import ConfigError

# -- serve --------------------------------------------------------------------------------------


def add_serve(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="answer peers' sessions and serve the local API until SIGTERM"
    )
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument(
        "--workers", type=int, default=1, help="server processes sharing the port (default 1)"
    )
    add_executor_option(p)
    p.set_defaults(func=_cmd_serve)


def add_executor_option(p: argparse.ArgumentParser) -> None:
    """`--executor local|dask://HOST:PORT|dask+tls://HOST:PORT` (overrides node.toml's)."""
    p.add_argument(
        "--executor",
        metavar="local|dask://HOST:PORT",
        help="where batches of hashing and multiplication run: local (a process pool), or a "
        "Dask scheduler, dask://HOST:PORT or dask+tls://HOST:PORT (docs/DASK.md); default: "
        "node.toml's executor, else local",
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from node.api.metrics_dir import metrics_directory  # before prometheus-client is imported
    from node.setup.config import NodeConfig
    from node.setup.lock import serving

    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )
    config = NodeConfig.load(args.node_dir)
    with metrics_directory(config.node_dir), contextlib.ExitStack() as stack:
        from node.api.serving import api_job, bind
        from node.jobs.config_watch import watch_config
        from node.jobs.notify import deliver_notifications
        from node.jobs.retention import purge_expired
        from node.jobs.sweeps import sweep_on_change_and_schedule
        from node.rpc.server import Job, serve  # imports grpc: only for the commands needing it

        jobs: list[Job] = [
            watch_config,
            purge_expired,
            sweep_on_change_and_schedule,
            deliver_notifications,
        ]
        # The API's socket is bound before the workers fork, so that they all accept from it;
        # not when the node is served already (serve says by whom, rather than "port in use").
        api = None if serving(config.node_dir) else bind(config)
        if api is not None:
            stack.callback(api.close)
            jobs.append(api_job(api))
        try:
            serve(str(args.node_dir), workers=args.workers, jobs=jobs, executor=args.executor)
        except OSError as exc:
            raise ConfigError(str(exc)) from None
    return 0


# -- match --------------------------------------------------------------------------------------


def add_match(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("match", help="run a session with a peer as initiator")
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument("--peer", required=True, help="the peer agency id")
    p.add_argument("--list", required=True, dest="list_name", help="this node's list")
    p.add_argument("--peer-list", help="the peer's list (default: the same name as --list)")
    p.add_argument("--mode", choices=["mutual", "count", "screen"], default="mutual")
    p.add_argument("--purpose", required=True, help="why the check is made (audited)")
    p.add_argument("--operator", help="who runs the check (default: the OS user)")
    p.add_argument("--timeout", type=float, default=600.0, help="deadline in seconds")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_executor_option(p)
    p.set_defaults(func=_cmd_match)


def _cmd_match(args: argparse.Namespace) -> int:
    import asyncio

    from node.sessions.results import MatchResult
    from node.setup.config import NodeConfig
    from node.setup.context import NodeContext
    from node.setup.executor import executor_choice, open_runner

    config = NodeConfig.load(args.node_dir)
    # Forked (local) or connected (Dask) before any gRPC object exists. A Dask scheduler that
    # cannot be reached fails the session at its first batch, recorded and audited.
    pool, runner = open_runner(config, executor_choice(config, args.executor), strict=False)
    try:
        from node.rpc.client import match

        node = NodeContext.load(args.node_dir, runner)
        bars = Bars(f"{args.mode} with {args.peer}", enabled=wanted(args.json))

        async def session() -> MatchResult:
            try:
                return await match(
                    node,
                    peer=args.peer,
                    list_name=args.list_name,
                    peer_list=args.peer_list or args.list_name,
                    mode=args.mode,
                    purpose=args.purpose,
                    operator=operator_name(args),
                    timeout=args.timeout,
                    progress=bars,
                )
            except asyncio.CancelledError:
                # Ctrl-C (asyncio.run cancels this task): the session is recorded failed.
                # Drop the batches still queued, so that no thread of the loop waits for
                # them before asyncio.run can return.
                pool.shutdown(wait=False, cancel_futures=True)
                raise

        with bars:
            result = asyncio.run(session())
    finally:
        pool.shutdown(cancel_futures=True)
    if args.json:
        import sys

        result.write_json(sys.stdout)  # what print_json prints, a thousand matches at a time
        return 0
    print(
        f"session {result.session_id} with {result.peer} ({result.mode}, {result.suite}): "
        f"{result.local_count:,} elements against {result.peer_count:,}, "
        f"{result.match_count:,} shared"
    )
    if result.matches:
        rows = [[m["ref"], m["type"], m["peer_label"] or "-"] for m in result.matches]
        print(format_table(["ref", "type", "peer label"], rows))
    return 0


# -- epoch rotate -------------------------------------------------------------------------------


def add_epoch(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("epoch", help="manage screening key epochs")
    sub = p.add_subparsers(dest="epoch_command", required=True, metavar="COMMAND")
    rotate = sub.add_parser(
        "rotate", help="start a new screening key epoch for a list (peers fetch it again)"
    )
    rotate.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    rotate.add_argument("--list", required=True, dest="list_name", metavar="NAME")
    rotate.add_argument("--operator", help="who rotates (default: the OS user)")
    rotate.set_defaults(func=_cmd_epoch_rotate)


def _cmd_epoch_rotate(args: argparse.Namespace) -> int:
    from crypto.batch import BatchRunner, new_process_pool
    from node.data.screening import entry_counts
    from node.sessions.screen_responder import current_epoch, rotate_epoch
    from node.setup.context import NodeContext

    pool = new_process_pool()
    try:
        node = NodeContext.load(args.node_dir, BatchRunner(pool))
        with node.open_store() as store:
            epoch = rotate_epoch(node, store, args.list_name, operator_name(args))
            epoch = current_epoch(node, store, args.list_name)  # encode now, not on first fetch
            entries, _ = entry_counts(store, epoch.id)
    finally:
        pool.shutdown(cancel_futures=True)
    print(f"list {args.list_name}: screening epoch {epoch.id}, {entries:,} entries encoded")
    return 0
