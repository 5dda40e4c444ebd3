"""`ingest`, `columns`, `lists`, `records remove` and `lists drop`: what a node holds."""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from node.cli.common import (
    Subparsers,
    json_error,
    operator_name,
    print_json,
)
from node.cli.progress import Bars, wanted
from node.cli.sessions import add_executor_option
from node.cli.tables import format_table
from node.data import erasure
from node.data.identifiers import COLUMN_GUIDE
from node.data.store import KINDS, Store
from node.errors import IngestRejected
from node.setup.config import (
    NodeConfig,
)

if TYPE_CHECKING:
    from node.data.ingest import IngestResult

_MAX_REJECTS_SHOWN = 50


# -- ingest -------------------------------------------------------------------------------------


def add_ingest(subparsers: Subparsers) -> None:
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
    p.add_argument(
        "--retain-days",
        type=int,
        metavar="N",
        help="records of the list not stored again for N days expire ('serve' erases them); "
        "0 keeps them forever; kept by later ingests (default: the node's retain_days)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--operator", default="", help="who runs the ingest (for the audit log)")
    add_executor_option(p)
    p.set_defaults(func=_cmd_ingest)


def _print_ingest(result: IngestResult, as_json: bool, error: Exception | None = None) -> None:
    if as_json:  # a refused ingest: its rejections and the error in one JSON document
        print_json({**result.to_json(), **(json_error(error) if error else {})})
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
    from node.data import audit
    from node.data.ingest import IngestResult, ingest_file
    from node.setup.executor import cluster_executor

    config = NodeConfig.load(args.node_dir)
    key = audit.load_signing_key(config.audit_key)
    operator = operator_name(args)
    with (
        cluster_executor(config, args.executor) as executor,  # None: a local pool if it pays
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
                retain_days=args.retain_days,
                operator=operator,
                executor=executor,
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


def add_columns(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("columns", help="list the columns an input file may have")
    p.add_argument("--json", action="store_true", help="print the columns as JSON")
    p.set_defaults(func=_cmd_columns)


def _cmd_columns(args: argparse.Namespace) -> int:
    if args.json:
        print_json([dataclasses.asdict(c) for c in COLUMN_GUIDE])
    else:
        print(_column_guide())
    return 0


# -- lists --------------------------------------------------------------------------------------


def add_lists(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("lists", help="show the node's lists")
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument("--json", action="store_true", help="print the lists as JSON")
    p.set_defaults(func=_cmd_lists)


def _cmd_lists(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.node_dir)
    with Store.open(config.store_path) as store:
        lists = store.lists()
        retention = erasure.retention_days(store.conn)
    if args.json:
        print_json([info.to_json() for info in lists])
    elif not lists:
        print(f"no lists in {args.node_dir}; load one with 'blindmatch ingest'")
    else:
        header = ["list", "kind", "records", "elements", "version", "updated", "retention"]
        rows = [
            [i.name, i.kind, i.records, i.elements, i.version, i.updated_at]
            + [_retention(retention.get(i.name), config.retain_days)]
            for i in lists
        ]
        print(format_table(header, rows))
        for info in (i for i in lists if i.stale):
            print(
                f"list {info.name} was stored by an older blindmatch and cannot be matched: "
                f"load it again with 'blindmatch ingest {args.node_dir} --list {info.name} "
                "--replace FILE'"
            )
    return 0


def _retention(own: int | None, default: int) -> str:
    """A list's retention as the `lists` table shows it."""
    days = default if own is None else own
    text = f"{days} days" if days else "kept"
    return f"{text} (node default)" if own is None else text


# -- records remove, lists drop -----------------------------------------------------------------


def add_records(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("records", help="erase records of a list")
    sub = p.add_subparsers(dest="records_command", required=True, metavar="COMMAND")
    remove = sub.add_parser(
        "remove",
        help="erase one record, its elements and hits (audited)",
        description=(
            "Erase one record in one transaction: its identifiers, cached points, screening "
            "entries and hits. The list's screening key epoch is rotated, so a partner's "
            "cached copy of the encoded list can no longer answer for the record. The audit "
            "log keeps who, when, why (with --reason) and how many elements and hits went; "
            "never the ref. Removing a list's last record leaves the list, empty."
        ),
    )
    remove.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    remove.add_argument("--list", required=True, dest="list_name", metavar="NAME")
    remove.add_argument("--ref", required=True, metavar="REF", help="the record's ref, exactly")
    remove.add_argument(
        "--reason",
        metavar="TEXT",
        help="why the record is erased, for the data protection officer (audited; e.g. a "
        "court order or ticket number, never an identifier)",
    )
    remove.add_argument("--operator", metavar="NAME", help="who erases it (default: the OS user)")
    remove.set_defaults(func=_cmd_records_remove)


def add_lists_drop(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "lists drop",
        prog="blindmatch lists drop",
        help="erase a whole list: records, elements, screening epochs and hits (audited)",
        description=(
            "Erase a list in one transaction: its records, elements, screening key epochs "
            "and entries, and its hits. The audit log keeps who, when, why and the counts."
        ),
    )
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument("--list", required=True, dest="list_name", metavar="NAME")
    p.add_argument("--reason", metavar="TEXT", help="why the list is dropped (audited)")
    p.add_argument("--operator", metavar="NAME", help="who drops it (default: the OS user)")
    p.set_defaults(func=_cmd_lists_drop)


def _cmd_records_remove(args: argparse.Namespace) -> int:
    from crypto.batch import BatchRunner
    from node.sessions.erasure import check_reason, remove_record
    from node.setup.context import NodeContext

    check_reason(args.reason)  # before anything is opened
    node = NodeContext.load(args.node_dir, BatchRunner())
    with node.open_store() as store:
        done = remove_record(
            node, store, args.list_name, args.ref, args.reason, operator_name(args)
        )
    print(
        f"list {done.list}: 1 record erased with {done.erased.elements:,} element(s) and "
        f"{done.erased.hits:,} hit(s)"
        + (
            f"; screening key epoch {done.epoch} started, partners fetch the list again"
            if done.epoch is not None
            else ""
        )
    )
    return 0


def _cmd_lists_drop(args: argparse.Namespace) -> int:
    from crypto.batch import BatchRunner
    from node.sessions.erasure import drop_list
    from node.setup.context import NodeContext

    node = NodeContext.load(args.node_dir, BatchRunner())
    with node.open_store() as store:
        done = drop_list(node, store, args.list_name, args.reason, operator_name(args))
    e = done.erased
    print(
        f"list {done.list} dropped: {e.records:,} record(s), {e.elements:,} element(s) and "
        f"{e.hits:,} hit(s) erased"
    )
    return 0
