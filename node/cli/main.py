"""The `blindmatch` command line (DESIGN §6): a stable contract that tests and users rely on.

Each subcommand is one `_add_<command>(subparsers)` function that declares its
arguments and sets ``func`` to a `_cmd_<command>(args) -> int` handler;
`COMMANDS` lists the registration functions in help order. To add a command,
write both functions and append one line to `COMMANDS`.

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
import asyncio
import dataclasses
import datetime as dt
import getpass
import json
import logging
import os
import re
import shutil
import signal
import sys
import textwrap
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import Any

from crypto.errors import CryptoError
from crypto.groups import SUITES
from node.cli.progress import Bars, wanted
from node.cli.tables import format_table
from node.data import audit
from node.data.identifiers import COLUMN_GUIDE
from node.data.ingest import IngestResult, ingest_file
from node.data.store import KINDS, Store
from node.errors import ConfigError, IngestRejected, NodeError
from node.setup import pki
from node.setup.config import (
    MODES,
    SETTABLE,
    NodeConfig,
    PeerPolicy,
    check_address,
    check_agency,
    with_option,
    with_peer,
    without_peer,
    write_config,
)

__all__ = ["COMMANDS", "build_parser", "main"]

PROG = "blindmatch"
_MAX_REJECTS_SHOWN = 50

Subparsers = Any  # argparse's _SubParsersAction is private


# -- helpers ------------------------------------------------------------------------------------


def _print_json(value: object) -> None:
    print(json.dumps(value, ensure_ascii=False))


def _csv_option(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


def _operator(args: argparse.Namespace) -> str:
    """The person the audit log names: --operator, else the OS user."""
    if args.operator:
        return str(args.operator)
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _message(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _json_error(exc: Exception) -> dict[str, Any]:
    """`{"error": {"kind", "message"}}` (DESIGN §6); the kind is the error class, snake_case."""
    kind = re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()
    return {"error": {"kind": kind, "message": _message(exc)}}


def _fail(exc: Exception, as_json: bool) -> int:
    """Reports a NodeError or CryptoError as one line on stderr (and JSON on stdout); returns 1."""
    print(f"{PROG}: error: {_message(exc)}", file=sys.stderr)
    if as_json and not isinstance(exc, IngestRejected):  # that one printed its result already
        _print_json(_json_error(exc))
    return 1


# -- ca init ------------------------------------------------------------------------------------


def _add_ca(subparsers: Subparsers) -> None:
    ca = subparsers.add_parser("ca", help="manage the federation certificate authority")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True, metavar="COMMAND")
    init = ca_sub.add_parser("init", help="create a federation CA (ca.key, ca.crt)")
    init.add_argument("ca_dir", metavar="CA_DIR", type=Path)
    init.add_argument("--name", default="blindmatch federation CA", help="CA common name")
    init.set_defaults(func=_cmd_ca_init)


def _cmd_ca_init(args: argparse.Namespace) -> int:
    cert = pki.init_ca(args.ca_dir, args.name)
    print(f"created CA {args.name!r}: {cert} (keep {args.ca_dir / 'ca.key'} offline)")
    return 0


# -- init ---------------------------------------------------------------------------------------


def _add_init(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("init", help="create a node directory")
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument("--agency", required=True, help="agency id, e.g. customs-nl")
    p.add_argument("--listen", required=True, metavar="HOST:PORT")
    p.add_argument("--ca", required=True, metavar="CA_DIR", type=Path)
    p.add_argument("--region", default="", metavar="CC", help="default phone region, e.g. NL")
    p.add_argument("--date-order", default="", choices=["DMY", "MDY"])
    p.add_argument("--suite", default="x25519-blake3", choices=sorted(SUITES))
    p.set_defaults(func=_cmd_init)


def _cmd_init(args: argparse.Namespace) -> int:
    node_dir: Path = args.node_dir
    check_agency(args.agency)
    host, _ = check_address(args.listen, "--listen")
    if (node_dir / "node.toml").exists() or (node_dir / "store.sqlite").exists():
        raise ConfigError(f"{node_dir} already holds a node; choose another NODE_DIR")
    config = NodeConfig(  # validates region, date order and suite before anything is written
        node_dir=node_dir,
        agency=args.agency,
        listen=args.listen,
        region=args.region.upper(),
        date_order=args.date_order,
        suite=args.suite,
        peers=MappingProxyType({}),
    )
    created = not node_dir.exists()
    try:
        node_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        node_dir.chmod(0o700)  # plaintext identifiers live here: the node's user only
        pki.issue_node_certificate(args.ca, node_dir, args.agency, (host,))
        pki.generate_audit_key(node_dir)
        Store.open(node_dir, create=True).close()
        write_config(config)
    except BaseException:
        if created:
            shutil.rmtree(node_dir, ignore_errors=True)
        raise
    print(f"created node {args.agency!r} in {node_dir} (listen {args.listen})")
    return 0


# -- config set / show -------------------------------------------------------------------------


def _add_config(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("config", help="show or change the node's settings (node.toml)")
    sub = p.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    keys = "\n".join(f"  {key:<20} {meaning}" for key, meaning in SETTABLE.items())
    set_ = sub.add_parser(
        "set",
        help="change one setting, e.g. 'config set NODE_DIR date_order DMY' (audited)",
        epilog=f"settable keys:\n{keys}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    set_.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    set_.add_argument("key", metavar="KEY", help="a key listed below")
    set_.add_argument("value", metavar="VALUE", help="the new value ('' to unset a text key)")
    set_.add_argument("--operator", help="who changes it (default: the OS user)")
    set_.set_defaults(func=_cmd_config_set)
    show = sub.add_parser("show", help="print the node's settings")
    show.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    show.add_argument("--json", action="store_true", help="print the settings as JSON")
    show.set_defaults(func=_cmd_config_show)


def _cmd_config_set(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.node_dir)
    updated = with_option(config, args.key, args.value)
    before, after = getattr(config, args.key), getattr(updated, args.key)
    fields = {"operator": _operator(args), "key": args.key, "before": before, "after": after}
    _write_audited(config, updated, "config.set", fields)
    print(f"{args.key}: {before!r} -> {after!r} in {config.config_path}")
    if args.key in ("region", "date_order"):
        print("applies to ingests from now on; lists already stored keep their elements")
    elif args.key in ("max_sessions", "grace_seconds"):
        print("a running 'blindmatch serve' applies this after a restart")
    else:
        print("a running 'blindmatch serve' applies it within seconds")
    return 0


def _cmd_config_show(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.node_dir)
    settings = {k: v for k, v in config.to_toml().items() if k != "peers"}
    if args.json:
        _print_json(settings)
    else:
        print(format_table(["key", "value"], [[k, repr(v)] for k, v in settings.items()]))
    return 0


# -- peer add -----------------------------------------------------------------------------------


def _peer_options(p: argparse.ArgumentParser, *, new: bool) -> None:
    """The policy options of `peer add` (defaults for what is not given) and `peer set`."""
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument("--agency", required=True, help="the peer's agency id")
    p.add_argument("--address", required=new, metavar="HOST:PORT", help="where the peer listens")
    p.add_argument("--lists", metavar="L1,L2", help="lists it may match, comma-separated ('': all)")
    p.add_argument(
        "--modes", metavar="MODES", help=f"allowed modes, from {','.join(sorted(MODES))}"
    )
    labels = p.add_mutually_exclusive_group()
    labels.add_argument(
        "--release-labels", action="store_true", default=None, help="release labels on a match"
    )
    labels.add_argument(
        "--withhold-labels", action="store_false", dest="release_labels", help="release none"
    )
    p.add_argument("--max-set-size", type=int, metavar="N", help="largest set it may declare")
    p.add_argument("--sessions-per-hour", type=int, metavar="N", help="sessions per direction")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="calls served at once")
    p.add_argument(
        "--screen-budget",
        "--screen-budget-per-day",
        type=int,
        metavar="N",
        dest="screen_budget_per_day",
        help="screening items evaluated for it per day",
    )
    p.add_argument("--operator", help="who changes the policy (default: the OS user)")


def _add_peer(subparsers: Subparsers) -> None:
    peer = subparsers.add_parser("peer", help="manage peer agencies and their policy")
    peer_sub = peer.add_subparsers(dest="peer_command", required=True, metavar="COMMAND")
    defaults = PeerPolicy("default", "localhost:1")
    add = peer_sub.add_parser(
        "add",
        help="add a peer; options not given take their defaults",
        epilog=(
            f"defaults: modes {','.join(sorted(defaults.modes))}, labels withheld, "
            f"--max-set-size {defaults.max_set_size}, --sessions-per-hour "
            f"{defaults.sessions_per_hour}, --max-concurrent {defaults.max_concurrent}, "
            f"--screen-budget {defaults.screen_budget_per_day}"
        ),
    )
    _peer_options(add, new=True)
    add.set_defaults(func=_cmd_peer_change, new=True)
    set_ = peer_sub.add_parser("set", help="change only the given options of a peer's policy")
    _peer_options(set_, new=False)
    set_.set_defaults(func=_cmd_peer_change, new=False)
    remove = peer_sub.add_parser("remove", help="remove a peer and its policy")
    remove.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    remove.add_argument("--agency", required=True, help="the peer's agency id")
    remove.add_argument("--operator", help="who removes it (default: the OS user)")
    remove.set_defaults(func=_cmd_peer_remove)
    list_ = peer_sub.add_parser("list", help="show every peer and its policy")
    list_.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    list_.add_argument("--json", action="store_true", help="print the peers as JSON")
    list_.set_defaults(func=_cmd_peer_list)


def _write_audited(
    config: NodeConfig, updated: NodeConfig, event: str, fields: dict[str, Any]
) -> None:
    """Writes `updated` as node.toml with one audit entry, in one transaction."""
    key = audit.load_signing_key(config.audit_key)
    with Store.open(config.store_path) as store, store.transaction() as conn:
        audit.append(conn, key, event, fields)
        write_config(updated)  # inside the transaction: a failed write leaves no audit entry


def _describe_peer(policy: PeerPolicy) -> str:
    lists = ", ".join(policy.lists) or "all lists"
    labels = "labels released" if policy.release_labels else "labels withheld"
    return (
        f"peer {policy.agency} at {policy.address}: {lists}; "
        f"modes {', '.join(sorted(policy.modes))}; {labels}; {policy.sessions_per_hour}/h, "
        f"{policy.max_concurrent} at once, sets up to {policy.max_set_size:,}, "
        f"screening {policy.screen_budget_per_day:,}/day"
    )


_POLICY_OPTIONS = tuple(f.name for f in dataclasses.fields(PeerPolicy) if f.name != "agency")
"""Every policy field, each an option of `peer add` and `peer set` (`_peer_options`)."""


def _cmd_peer_change(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.node_dir)
    given = {name: getattr(args, name) for name in _POLICY_OPTIONS}
    changes: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
    if "lists" in changes:
        changes["lists"] = _csv_option(changes["lists"])
    if "modes" in changes:
        changes["modes"] = frozenset(_csv_option(changes["modes"]))
    if not args.new and not changes:
        raise ConfigError("peer set changes nothing without an option; see 'peer set --help'")
    updated = with_peer(config, args.agency, changes, new=args.new)
    before = config.peers.get(args.agency)
    after = updated.peers[args.agency]
    _write_audited(
        config,
        updated,
        "peer.added" if args.new else "peer.changed",
        {
            "operator": _operator(args),
            "peer": args.agency,
            "before": before.to_json() if before else None,
            "after": after.to_json(),
        },
    )
    print(_describe_peer(after))
    print("a running 'blindmatch serve' applies it within seconds")
    return 0


def _cmd_peer_remove(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.node_dir)
    updated = without_peer(config, args.agency)
    before = config.peers[args.agency].to_json()
    fields = {"operator": _operator(args), "peer": args.agency, "before": before, "after": None}
    _write_audited(config, updated, "peer.removed", fields)
    print(f"peer {args.agency} removed from {config.config_path}")
    return 0


def _cmd_peer_list(args: argparse.Namespace) -> int:
    peers = [policy for _, policy in sorted(NodeConfig.load(args.node_dir).peers.items())]
    if args.json:
        _print_json([policy.to_json() for policy in peers])
    elif not peers:
        print(f"no peers in {args.node_dir}; add one with 'blindmatch peer add'")
    else:
        for policy in peers:
            print(_describe_peer(policy))
    return 0


# -- ingest -------------------------------------------------------------------------------------


def _add_ingest(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "ingest",
        help="load a list from CSV, JSON Lines, a JSON array or .xlsx into the store",
        description="Load a list into the store in one transaction; a failed one stores nothing.",
        epilog=f"columns (also 'blindmatch columns'):\n{_column_guide()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument("--list", required=True, metavar="NAME", dest="list_name")
    p.add_argument("--kind", choices=KINDS, help="list kind (new lists: watchlist)")
    p.add_argument("file", metavar="FILE", type=Path)
    p.add_argument("--replace", action="store_true", help="replace the list's content")
    p.add_argument("--strict", action="store_true", help="store nothing if anything is rejected")
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept an ingest that stores no record (or, with --replace, empties the list)",
    )
    p.add_argument(
        "--delimiter", metavar="C", help="CSV delimiter: ',', ';', 'tab' (default: sniffed)"
    )
    p.add_argument(
        "--encoding",
        metavar="E",
        help="text encoding, e.g. cp1252 (default: UTF-8, or UTF-16/32 by byte-order mark)",
    )
    p.add_argument("--sheet", metavar="NAME", help=".xlsx: the sheet to read (default: the first)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--operator", default="", help="who runs the ingest (for the audit log)")
    p.set_defaults(func=_cmd_ingest)


def _print_ingest(result: IngestResult, as_json: bool, error: Exception | None = None) -> None:
    if as_json:  # a refused ingest: its rejections and the error in one JSON document
        _print_json({**result.to_json(), **(_json_error(error) if error else {})})
        return
    verb = "replaced" if result.replaced else "stored"
    if not result.stored:
        verb = "read (nothing stored)"
    print(
        f"list {result.name} ({result.kind}) from {result.read_as}: {result.rows:,} rows read, "
        f"{result.records:,} records and {result.elements:,} elements {verb}, "
        f"{len(result.rejected):,} rejected"
    )
    for r in result.rejected[:_MAX_REJECTS_SHOWN]:
        print(f"  line {r.line}, {r.column}: {r.reason}")
    if len(result.rejected) > _MAX_REJECTS_SHOWN:
        print(f"  ... and {len(result.rejected) - _MAX_REJECTS_SHOWN:,} more (see --json)")


def _cmd_ingest(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.node_dir)
    key = audit.load_signing_key(config.audit_key)
    operator = _operator(args)
    with (
        Store.open(config.store_path) as store,
        Bars(args.list_name, enabled=wanted(args.json)) as bars,
    ):
        try:
            result = ingest_file(
                store,
                args.file,
                args.list_name,
                config.canon_context(),
                key,
                kind=args.kind,
                replace=args.replace,
                strict=args.strict,
                allow_empty=args.allow_empty,
                delimiter=args.delimiter,
                encoding=args.encoding,
                sheet=args.sheet,
                operator=operator,
                on_progress=lambda done, rows: bars.fraction("read", done, f"{rows:,} rows"),
            )
        except IngestRejected as exc:
            if isinstance(exc.result, IngestResult):
                exc.result.records = exc.result.elements = 0
                _print_ingest(exc.result, args.json, error=exc)
            raise
    _print_ingest(result, args.json)
    return 0


# -- columns ------------------------------------------------------------------------------------


def _column_guide() -> str:
    """Every input column: its name, then what it accepts wrapped beside it, and an example."""
    lines = []
    for c in COLUMN_GUIDE:
        text = textwrap.wrap(c.format, 70) + [f"e.g. {c.example}"]
        lines += [f"  {c.column if i == 0 else '':<18}{line}" for i, line in enumerate(text)]
    return "\n".join(lines)


def _add_columns(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("columns", help="list the columns an input file may have")
    p.add_argument("--json", action="store_true", help="print the columns as JSON")
    p.set_defaults(func=_cmd_columns)


def _cmd_columns(args: argparse.Namespace) -> int:
    if args.json:
        _print_json([dataclasses.asdict(c) for c in COLUMN_GUIDE])
    else:
        print(_column_guide())
    return 0


# -- lists --------------------------------------------------------------------------------------


def _add_lists(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("lists", help="show the node's lists")
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument("--json", action="store_true", help="print the lists as JSON")
    p.set_defaults(func=_cmd_lists)


def _cmd_lists(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.node_dir)
    with Store.open(config.store_path) as store:
        lists = store.lists()
    if args.json:
        _print_json([info.to_json() for info in lists])
    elif not lists:
        print(f"no lists in {args.node_dir}; load one with 'blindmatch ingest'")
    else:
        header = ["list", "kind", "records", "elements", "version", "updated"]
        rows = [[i.name, i.kind, i.records, i.elements, i.version, i.updated_at] for i in lists]
        print(format_table(header, rows))
        for info in (i for i in lists if i.stale):
            print(
                f"list {info.name} was stored by an older blindmatch and cannot be matched: "
                f"load it again with 'blindmatch ingest {args.node_dir} --list {info.name} "
                "--replace FILE'"
            )
    return 0


# -- hits ---------------------------------------------------------------------------------------


def _add_hits(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("hits", help="show every hit this node has recorded")
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    p.set_defaults(func=_cmd_hits)


def _cmd_hits(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.node_dir)
    with Store.open(config.store_path) as store:
        hits = store.hits()
    if args.json:
        _print_json(hits)
    elif not hits:
        print("no hits recorded")
    else:
        keys = ["session_id", "peer", "role", "ref", "type", "peer_label"]
        print(format_table(keys, [[h[k] if h[k] is not None else "-" for k in keys] for h in hits]))
    return 0


# -- serve --------------------------------------------------------------------------------------


def _add_serve(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("serve", help="answer peers' sessions until SIGTERM")
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument(
        "--workers", type=int, default=1, help="server processes sharing the port (default 1)"
    )
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from node.jobs.config_watch import watch_config
    from node.rpc.server import serve  # imports grpc: only for the commands that need it

    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    )
    try:
        serve(str(args.node_dir), workers=args.workers, jobs=[watch_config])
    except OSError as exc:
        raise ConfigError(str(exc)) from None
    return 0


# -- match --------------------------------------------------------------------------------------


def _add_match(subparsers: Subparsers) -> None:
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
    p.set_defaults(func=_cmd_match)


def _cmd_match(args: argparse.Namespace) -> int:
    from crypto.batch import BatchRunner, new_process_pool
    from node.sessions.results import MatchResult
    from node.setup.context import NodeContext

    pool = new_process_pool()  # forked before any gRPC object exists
    try:
        from node.rpc.client import match

        node = NodeContext.load(args.node_dir, BatchRunner(pool))
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
                    operator=_operator(args),
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
        _print_json(result.to_json())
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


def _add_epoch(subparsers: Subparsers) -> None:
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
            epoch = rotate_epoch(node, store, args.list_name, _operator(args))
            epoch = current_epoch(node, store, args.list_name)  # encode now, not on first fetch
            entries, _ = entry_counts(store, epoch.id)
    finally:
        pool.shutdown(cancel_futures=True)
    print(f"list {args.list_name}: screening epoch {epoch.id}, {entries:,} entries encoded")
    return 0


# -- audit verify -------------------------------------------------------------------------------


def _add_audit(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("audit", help="check the node's audit log")
    sub = p.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = sub.add_parser("verify", help="re-check the hash chain and every signature")
    verify.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    verify.add_argument("--head", help="a head SEQ:HEX recorded earlier, to detect truncation")
    verify.set_defaults(func=_cmd_audit_verify)
    export = sub.add_parser(
        "export",
        help="write the entries as JSON Lines with their chain fields, for a supervisory authority",
        description=(
            "Each line has seq, at, event, body, prev_hash, hash and signature: with the node's "
            "audit.pub anyone can re-check them (chain format: node/data/audit.py). The "
            "export itself is audited."
        ),
    )
    export.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    export.add_argument("--since", metavar="ISO", help="only entries at or after this UTC time")
    export.add_argument("--operator", help="who exports (default: the OS user)")
    export.set_defaults(func=_cmd_audit_export)


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.node_dir)
    public_key = audit.load_public_key(config.node_dir / "audit.pub")
    expected = audit.Head.parse(args.head) if args.head else None
    with Store.open(config.store_path) as store:
        result = audit.verify(store.conn, public_key, expected_head=expected)
    if not result.ok:
        raise NodeError(f"audit log of {config.agency} fails verification: {result}")
    print(result)
    return 0


def _since(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--since {text!r} is not an ISO date or time, e.g. 2026-11-01 or 2026-11-01T08:00Z"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _cmd_audit_export(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.node_dir)
    since = _since(args.since)
    key = audit.load_signing_key(config.audit_key)
    with Store.open(config.store_path) as store:
        count = 0
        for line in audit.export(store.conn, since):
            print(json.dumps(line, ensure_ascii=False))
            count += 1
        sys.stdout.flush()
        with store.transaction() as conn:
            fields = {"operator": _operator(args), "since": args.since or "", "entries": count}
            audit.append(conn, key, "audit.exported", fields)
    return 0


# -- demo ---------------------------------------------------------------------------------------


def _add_demo(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("demo", help="run a three-agency federation on loopback")
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from node.cli.demo import main as demo

    return demo()


# -- parser and entry point ---------------------------------------------------------------------

COMMANDS: list[Callable[[Subparsers], None]] = [
    _add_ca,
    _add_init,
    _add_config,
    _add_peer,
    _add_ingest,
    _add_columns,
    _add_lists,
    _add_serve,
    _add_match,
    _add_hits,
    _add_audit,
    _add_demo,
    _add_epoch,
]
"""Registration functions of the subcommands, in help order; append one to add a command."""


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser with every command of `COMMANDS` registered."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Federated, privacy-preserving matching between agencies."
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(subparsers)
    return parser


def _version() -> str:
    try:
        return metadata.version("blindmatch")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


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
