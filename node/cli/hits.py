"""`hits`: what sessions found."""

from __future__ import annotations

import argparse
from pathlib import Path

from node.cli.common import (
    Subparsers,
    print_json,
)
from node.cli.tables import format_table
from node.data.store import Store
from node.setup.config import (
    NodeConfig,
)

# -- hits ---------------------------------------------------------------------------------------


def add_hits(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("hits", help="show every hit this node has recorded")
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    p.set_defaults(func=_cmd_hits)


def _cmd_hits(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.node_dir)
    with Store.open(config.store_path) as store:
        hits = store.hits()
    if args.json:
        print_json(hits)
    elif not hits:
        print("no hits recorded")
    else:
        keys = ["session_id", "peer", "role", "ref", "type", "peer_label"]
        print(format_table(keys, [[h[k] if h[k] is not None else "-" for k in keys] for h in hits]))
    return 0
