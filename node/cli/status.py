"""`status`: is the node serving, which peers answer, what expires, what it holds."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from node.cli.common import Subparsers, print_json
from node.cli.tables import format_table
from node.setup.config import NodeConfig


def add_status(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "status",
        help="show whether the node serves, which peers answer, expiries, lists and new hits",
        description=(
            "Checks each peer with a health check over mTLS (its certificate's expiry too) and "
            "ends with what to act on; exits 0 whatever it finds."
        ),
    )
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_cmd_status)


def _cmd_status(args: argparse.Namespace) -> int:
    import asyncio

    from node.rpc.node_status import node_status  # imports grpc: only for the commands using it

    config = NodeConfig.load(args.node_dir)
    report = asyncio.run(node_status(config, dt.datetime.now(dt.UTC)))
    if args.json:
        print_json(report)
    else:
        print(_text(report))
    return 0


def _expiry(cert: dict[str, Any] | None) -> str:
    if cert is None:
        return "-"
    return f"{cert['not_after'][:10]} ({cert['days_left']:,} days)"


def _text(report: dict[str, Any]) -> str:
    serve = report["serving"]
    if serve is None:
        state = "not serving"
    else:
        answering = "answering" if serve["answering"] else "NOT answering"
        state = f"serving since {serve['since']} (pid {serve['pid']}), {answering}"
    cert, crl = report["certificate"], report["crl"]
    lines = [
        f"{report['agency']} on {report['listen']}: {state}",
        f"certificate: serial {cert['serial']}, expires {_expiry(cert)}"
        if cert
        else "certificate: none installed",
        f"revocation list: number {crl['number']}, {crl['revoked']:,} revoked, "
        f"next update {crl['next_update'] or '-'}"
        if crl
        else "revocation list: none installed",
        "",
    ]
    if report["peers"]:
        rows = [
            [
                p["agency"],
                p["address"],
                "yes" if p["reachable"] else f"no: {p['error']}",
                _expiry(p["certificate"])
                + (" REVOKED" if p["certificate"] and p["certificate"]["revoked"] else ""),
            ]
            for p in report["peers"]
        ]
        lines += [format_table(["peer", "address", "reachable", "certificate expires"], rows), ""]
    else:
        lines += ["no peers", ""]
    if report["lists"]:
        rows = [
            [
                info["list"],
                info["kind"],
                info["records"],
                info["version"],
                info["updated"],
                info["screening_epoch"]["epoch"] if info["screening_epoch"] else None,
            ]
            for info in report["lists"]
        ]
        header = ["list", "kind", "records", "version", "updated", "screening epoch"]
        lines += [format_table(header, rows), ""]
    else:
        lines += ["no lists", ""]
    lines.append(f"new hits: {report['new_hits']:,}")
    if report.get("notifications"):
        rows = [
            [
                n["url"] + ("" if n["configured"] else " (not in node.toml)"),
                n["pending"],
                n["delivered"],
                n["failing"],
                (n["oldest_pending"] or {}).get("last_error") or "-",
                ((n["oldest_pending"] or {}).get("next_attempt_at") or "-")[:19],
            ]
            for n in report["notifications"]
        ]
        header = ["webhook", "pending", "delivered", "failing", "last error", "next attempt"]
        lines += ["", format_table(header, rows)]
    if report["warnings"]:
        lines += ["", "to act on:", *(f"  - {w}" for w in report["warnings"])]
    return "\n".join(lines)
