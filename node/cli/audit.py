"""`audit verify|export`: the node's hash-chained, signed log."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from node.cli.common import (
    Subparsers,
    operator_name,
    parse_since,
)
from node.data.store import Store
from node.errors import NodeError
from node.setup.config import (
    NodeConfig,
)

# -- audit verify -------------------------------------------------------------------------------


def add_audit(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("audit", help="check the node's audit log")
    sub = p.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = sub.add_parser("verify", help="re-check the hash chain and every signature")
    verify.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    verify.add_argument(
        "--since",
        metavar="ISO",
        help="only the entries at or after this UTC time, the first linked to the entry before",
    )
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
    from node.data import audit

    config = NodeConfig.load(args.node_dir)
    since = parse_since(args.since)
    public_key = audit.load_public_key(config.node_dir / "audit.pub")
    expected = audit.Head.parse(args.head) if args.head else None
    with Store.open(config.store_path) as store:
        result = audit.verify(store.conn, public_key, expected_head=expected, since=since)
    if not result.ok:
        raise NodeError(f"audit log of {config.agency} fails verification: {result}")
    print(result)
    return 0


def _cmd_audit_export(args: argparse.Namespace) -> int:
    from node.data import audit

    config = NodeConfig.load(args.node_dir)
    since = parse_since(args.since)
    key = audit.load_signing_key(config.audit_key)
    with Store.open(config.store_path) as store:
        count = 0
        for line in audit.export(store.conn, since):
            print(json.dumps(line, ensure_ascii=False))
            count += 1
        sys.stdout.flush()
        with store.transaction() as conn:
            fields = {"operator": operator_name(args), "since": args.since or "", "entries": count}
            audit.append(conn, key, "audit.exported", fields)
    return 0
