"""`hits` and `hits ack`: what sessions found, listed and acknowledged (both audited).

The audited consultation and acknowledgement are `node.sessions.hits`, which the
local API uses too; this module parses the options and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from node.cli.common import PROG, Subparsers, operator_name, parse_since, print_json
from node.cli.tables import format_table
from node.data.store import LIVE_LIST, Store, check_hits_list
from node.setup.config import NodeConfig, check_agency

_COLUMNS = ["id", "status", "peer", "list", "ref", "type", "peer_label", "role", "mode"]
_TIMES = ["first_seen", "last_seen"]

# -- hits ---------------------------------------------------------------------------------------


def add_hits(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "hits",
        help="list the hits this node has recorded, new ones first (audited)",
        description=(
            "One hit per peer, local record, element type and peer label, with when it was "
            "first and last seen and by how many sessions. New hits come first, then "
            "acknowledged ones; within each, the most recently seen first. Acknowledge one "
            f"with '{PROG} hits ack NODE_DIR HIT_ID --by NAME'. Each listing is audited "
            "(who, the filters, how many hits), never what they hold."
        ),
    )
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument("--new", action="store_true", help="only hits not yet acknowledged")
    p.add_argument(
        "--since", metavar="ISO", help="only hits last seen at or after this time (UTC by default)"
    )
    p.add_argument("--peer", metavar="ID", help="only hits found with this peer agency")
    p.add_argument(
        "--list",
        metavar="NAME",
        dest="list_name",
        help=f"only hits of this local list ('{LIVE_LIST}': of real-time screening)",
    )
    p.add_argument("--operator", help="who consults the hits (default: the OS user)")
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    p.set_defaults(func=_cmd_hits)

    ack = subparsers.add_parser(
        "hits ack",
        prog=f"{PROG} hits ack",
        help="acknowledge a new hit, naming who did (audited)",
        description=(
            "Moves one hit from new to acknowledged and records by whom, when and the note. "
            "The audit log keeps who, the hit's id, peer, list and type, and the note's "
            "length, never its text. A hit seen again later stays acknowledged."
        ),
    )
    ack.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    ack.add_argument("hit_id", metavar="HIT_ID", type=_hit_id, help="the id 'hits' shows")
    ack.add_argument(
        "--by",
        metavar="NAME",
        required=True,
        help=f"the person who acknowledges it (1-{Store.MAX_ACKNOWLEDGER_CHARS} characters)",
    )
    ack.add_argument(
        "--note",
        metavar="TEXT",
        help=f"what was done about it (at most {Store.MAX_NOTE_CHARS:,} characters)",
    )
    ack.add_argument("--operator", help="who runs the command (default: the OS user)")
    ack.add_argument("--json", action="store_true", help="print the acknowledged hit as JSON")
    ack.set_defaults(func=_cmd_hits_ack)


def _hit_id(text: str) -> int:
    """A HIT_ID argument: a positive integer, as `hits` shows it."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a hit id; use the number in the id column of "
            f"'{PROG} hits NODE_DIR --new'"
        )
    return int(text)


def _cmd_hits(args: argparse.Namespace) -> int:
    from node.data import audit
    from node.sessions.hits import HitFilters, view_hits

    since = parse_since(args.since)
    peer = check_agency(args.peer, "--peer") if args.peer is not None else None
    list_name = check_hits_list(args.list_name) if args.list_name is not None else None
    filters = HitFilters(new_only=args.new, since=since, peer=peer, list_name=list_name)
    config = NodeConfig.load(args.node_dir)
    key = audit.load_signing_key(config.audit_key)
    with Store.open(config.store_path) as store:
        hits = view_hits(store, key, operator_name(args), filters)
        hint = "" if hits else _unknown_filters(config, store, peer, list_name)
    if args.json:
        print_json(hits)
    elif not hits:
        print(f"no hits{' match the filters' if filters.any() else ' recorded'}{hint}")
    else:
        header = [*_COLUMNS, "first seen (UTC)", "last seen (UTC)", "sessions"]
        print(format_table(header, [_table_row(h) for h in hits]))
        new = sum(h["status"] == "new" for h in hits)
        print(f"\n{len(hits):,} hit(s), {new:,} new", end="")
        print(f"; acknowledge one with '{PROG} hits ack NODE_DIR ID --by NAME'" if new else "")
    return 0


def _table_row(hit: dict[str, Any]) -> list[object]:
    """A hit as a table row: the id as text (no thousands separator), times without '+00:00'."""
    times = [str(hit[t]).removesuffix("+00:00").replace("T", " ") for t in _TIMES]
    return [str(hit["id"]), *(hit[c] for c in _COLUMNS[1:]), *times, hit["sessions"]]


def _unknown_filters(config: NodeConfig, store: Store, peer: str | None, name: str | None) -> str:
    """Why a filter may have found nothing: a peer or list this node does not have."""
    hints = []
    if peer is not None and peer not in config.peers:
        hints.append(f"no peer {peer!r} in node.toml (peers: {', '.join(config.peers) or 'none'})")
    if name is not None and name != LIVE_LIST and name not in {i.name for i in store.lists()}:
        names = ", ".join(i.name for i in store.lists()) or "none"
        hints.append(f"no list {name!r} on this node (lists: {names})")
    return f"; {'; '.join(hints)}" if hints else ""


# -- hits ack -----------------------------------------------------------------------------------


def _cmd_hits_ack(args: argparse.Namespace) -> int:
    from node.data import audit
    from node.sessions.hits import acknowledge_hit

    by, note = Store.check_acknowledgement(args.by, args.note)  # before anything is opened
    config = NodeConfig.load(args.node_dir)
    key = audit.load_signing_key(config.audit_key)
    with Store.open(config.store_path) as store:
        hit = acknowledge_hit(store, key, operator_name(args), args.hit_id, by, note)
    if args.json:
        print_json(hit)
    else:
        print(
            f"hit {hit['id']} ({hit['type']} in {hit['list']}, found with {hit['peer']}) "
            f"acknowledged by {by} at {hit['acknowledged_at']}"
        )
    return 0
