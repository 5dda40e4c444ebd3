"""`blindmatch demo`: a three-agency federation on loopback, driven through the real CLI.

From the examples in `config/` (node.toml and a messy sample list per agency)
it creates a federation CA and three nodes in a temporary directory, starts
each with `blindmatch serve`, runs mutual, screening and count sessions between
them with `blindmatch match`, prints who matched what, shows a refusal, verifies every
audit log and stops the nodes by their process id.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from node.cli.tables import format_table

__all__ = ["CONFIG_DIR", "main"]

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
CLI = [sys.executable, "-m", "node.cli"]
# Each example agency, the list file it ingests and that file's kind.
AGENCIES = {
    "customs-nl": ("seizures", "seizures"),
    "police-nl": ("targets", "watchlist"),
    "border-guard-be": ("alerts", "watchlist"),
}
# How a file was exported, where it is not UTF-8 CSV: customs' is Excel's "CSV" on a
# Dutch desktop (semicolons, Windows-1252, CRLF).
EXPORT_OPTIONS = {"customs-nl": ("--encoding", "cp1252")}


def blindmatch(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs one CLI command and returns its result."""
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise SystemExit(f"blindmatch {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def free_port() -> int:
    """Returns a TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def set_up(root: Path) -> dict[str, Path]:
    """Creates the CA and the nodes from the examples, with fresh ports; returns node dirs."""
    blindmatch("ca", "init", str(root / "ca"), "--name", "Demo federation CA")
    examples = {a: tomllib.loads((CONFIG_DIR / a / "node.toml").read_text()) for a in AGENCIES}
    address = {a: f"127.0.0.1:{free_port()}" for a in AGENCIES}
    nodes = {}
    for agency, example in examples.items():
        node = root / agency
        blindmatch(
            "init",
            str(node),
            "--agency",
            agency,
            "--listen",
            address[agency],
            "--ca",
            str(root / "ca"),
            "--region",
            example["region"],
        )
        for peer, policy in example["peers"].items():
            args = [
                "peer",
                "add",
                str(node),
                "--agency",
                peer,
                "--address",
                address[peer],
                "--modes",
                ",".join(policy["modes"]),
                "--max-set-size",
                str(policy["max_set_size"]),
                "--sessions-per-hour",
                str(policy["sessions_per_hour"]),
            ]
            if policy["lists"]:
                args += ["--lists", ",".join(policy["lists"])]
            if policy["release_labels"]:
                args.append("--release-labels")
            blindmatch(*args)
        list_name, kind = AGENCIES[agency]
        blindmatch(
            "ingest",
            str(node),
            "--list",
            list_name,
            "--kind",
            kind,
            str(CONFIG_DIR / agency / f"{list_name}.csv"),
            *EXPORT_OPTIONS.get(agency, ()),
        )
        nodes[agency] = node
    return nodes


def start(node: Path) -> subprocess.Popen[str]:
    """Starts `blindmatch serve` and waits until it listens."""
    process = subprocess.Popen(
        [*CLI, "serve", str(node)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if "serving on" not in line:
        process.kill()
        raise SystemExit(f"node {node.name} did not start: {line}{process.stdout.read()}")
    return process


def session(
    nodes: dict[str, Path], initiator: str, responder: str, mode: str, purpose: str
) -> None:
    """Runs one session and prints what each side learned."""
    own_list, peer_list = AGENCIES[initiator][0], AGENCIES[responder][0]
    print(f"\n== {initiator} asks {responder} ({mode}): {own_list} x {peer_list} — {purpose}")
    result = blindmatch(
        "match",
        str(nodes[initiator]),
        "--peer",
        responder,
        "--list",
        own_list,
        "--peer-list",
        peer_list,
        "--mode",
        mode,
        "--purpose",
        purpose,
        "--json",
        check=False,
    )
    if result.returncode != 0:
        print(f"   refused: {result.stderr.strip()}")
        return
    outcome: dict[str, Any] = json.loads(result.stdout)
    print(
        f"   {outcome['local_count']} elements against {outcome['peer_count']}: "
        f"{outcome['match_count']} shared"
    )
    if mode == "count":
        print("   (count mode: neither side learns which)")
        return
    print(f"\n   {initiator} sees:")
    print(
        _indent(
            format_table(
                ["ref", "matched on", f"{responder}'s label"],
                [[m["ref"], m["type"], m["peer_label"]] for m in outcome["matches"]],
            )
        )
    )
    if mode == "screen":
        print(f"\n   {responder} learns only the batch size and records no hits.")
        return
    # Its hits with this initiator on this list: each pair meets once in the demo.
    listing = ["hits", str(nodes[responder]), "--peer", initiator, "--list", peer_list]
    mine = json.loads(blindmatch(*listing, "--operator", "demo", "--json").stdout)
    print(f"\n   {responder} sees (its hit records, from 'blindmatch hits'):")
    print(
        _indent(
            format_table(
                ["hit", "ref", "matched on", f"{initiator}'s label"],
                [[str(h["id"]), h["ref"], h["type"], h["peer_label"]] for h in mine],
            )
        )
    )


def _indent(text: str) -> str:
    return "\n".join("   " + line for line in text.splitlines())


def main() -> int:
    """Runs the demonstration; returns the exit code."""
    with tempfile.TemporaryDirectory(prefix="blindmatch-demo-") as tmp:
        root = Path(tmp)
        print(f"Setting up a federation CA and three agency nodes in {root} ...")
        nodes = set_up(root)
        print(blindmatch("lists", str(nodes["customs-nl"])).stdout.rstrip())
        processes = [start(node) for node in nodes.values()]
        try:
            for process, agency in zip(processes, nodes, strict=True):
                print(f"started {agency} (pid {process.pid})")
            session(
                nodes,
                "customs-nl",
                "police-nl",
                "mutual",
                "deconfliction of seizure follow-ups with open operations",
            )
            session(
                nodes,
                "customs-nl",
                "border-guard-be",
                "mutual",
                "reciprocal watchlist check, seizure subjects",
            )
            session(
                nodes,
                "customs-nl",
                "police-nl",
                "screen",
                "screening seizure subjects against the police watchlist",
            )
            session(
                nodes,
                "border-guard-be",
                "police-nl",
                "count",
                "volume check before a joint action day",
            )
            session(
                nodes,
                "border-guard-be",
                "police-nl",
                "mutual",
                "attempt beyond police-nl's policy for a foreign partner",
            )
        finally:
            for process in processes:
                os.kill(process.pid, signal.SIGTERM)
            for process in processes:
                process.wait(timeout=60)
        print("\nnodes stopped; audit logs:")
        for agency, node in nodes.items():
            print(f"   {agency}: {blindmatch('audit', 'verify', str(node)).stdout.strip()}")
    return 0
