"""`blindmatch demo`: a four-agency federation on loopback, driven through the real CLI.

From the examples in `config/` (a node.toml per agency, a messy sample list for
three of them) it creates, in a temporary directory, a federation CA and four
nodes — customs-nl, police-nl, border-guard-be and customs-de — and a webhook
receiver standing in for the agencies' case systems (`node.cli.demo_receiver`:
one path and one fresh secret per agency, written into each node's
``[[notify.webhook]]``); then it starts each node with `blindmatch serve`.

1. **Checks by hand**: mutual, screening and count sessions with `blindmatch
   match`, who matched what with which labels, and a refusal by policy.
2. **Deconfliction**: one agency after the other loads its live operations
   (`OPERATIONS`: persons, phones, ... and planned actions at the A1/A30 border
   crossing, dated from today) into the list ``ops`` while the nodes serve.
   Each node sweeps its changed list with every partner on its own (node.toml
   ``sweep_poll_seconds = 1``); the demo runs no sweep, it only reads the nodes'
   logs until every sweep session has completed on both sides, then waits until
   the receiver holds a verified notification of every hit, prints what each
   agency was told, and checks from the hits that what should be reported was,
   on both sides, and that the event 6 km away and the event a week later were
   not. The ``ops`` lists exist, empty, before the nodes start, because a sweep
   towards a partner that has no such list yet fails and is retried only 30 s later.

At the end it stops the nodes by pid, verifies every audit log, shuts the
receiver down and removes the directory; on an error (exit 1) or Ctrl-C (exit
130) it stops, shuts down and removes alike. Every command it starts, `serve`
included, also ends if the demo is killed (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import functools
import io
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from node.cli.demo_receiver import Delivery, Receiver
from node.cli.tables import format_table
from node.data.events import EARTH_RADIUS_M, false_positive_distance_m
from node.errors import NodeError
from node.setup.config import NodeConfig, Webhook, write_config

__all__ = ["AGENCIES", "CONFIG_DIR", "OPERATIONS", "OPS", "main", "sweep_peers"]

T = TypeVar("T")
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
AGENCIES = ("customs-nl", "police-nl", "border-guard-be", "customs-de")
"""The demo's agencies, in the order they load their operations."""
LISTS = {
    "customs-nl": ("seizures", "seizures"),
    "police-nl": ("targets", "watchlist"),
    "border-guard-be": ("alerts", "watchlist"),
}
"""Each agency's sample list in config/ (name, kind), matched by hand in part 1."""
# How a file was exported, where it is not UTF-8 CSV: customs' is Excel's "CSV" on a
# Dutch desktop (semicolons, Windows-1252, CRLF).
EXPORT_OPTIONS = {"customs-nl": ("--encoding", "cp1252")}
OPS = "ops"
"""The operations list every agency holds, by the name they agreed on."""
COMMAND_SECONDS = 300.0
START_SECONDS = 60.0
SWEEP_SECONDS = 60.0
"""How long one agency's load may take to be swept with every partner, on both sides."""
DELIVERY_SECONDS = 30.0
STOP_SECONDS = 45.0
# Runs `blindmatch ARGS` so that the kernel sends it SIGTERM when the demo dies, even by
# SIGKILL (argv[1]: the demo's pid, to catch a demo that died before prctl took effect).
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "if sys.platform == 'linux':\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
    "    if os.getppid() != int(sys.argv[1]):\n"
    "        sys.exit(0)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'node.cli', *sys.argv[2:]])\n"
)


def cli(*args: str) -> list[str]:
    """The command line of `blindmatch ARGS`, started so that it ends with the demo."""
    return [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *args]


# -- the operations --------------------------------------------------------------------------

SITE = (52.3000, 7.0300)
"""police-nl's traffic check on the A1 at the Dutch-German border crossing (De Poppe)."""


@dataclass(frozen=True)
class Planned:
    """An event: `east_m` metres east of `SITE`, `day` days after tomorrow, hours in UTC."""

    east_m: float
    radius_m: float
    day: int
    hours: tuple[int, int]

    @property
    def centre(self) -> tuple[float, float]:
        lat, lon = SITE
        east = math.degrees(self.east_m / (EARTH_RADIUS_M * math.cos(math.radians(lat))))
        return lat, round(lon + east, 6)

    def window(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        today = dt.datetime.combine(now.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
        day = today + dt.timedelta(days=1 + self.day)
        return day + dt.timedelta(hours=self.hours[0]), day + dt.timedelta(hours=self.hours[1])


@dataclass(frozen=True)
class Operation:
    """One record of an agency's operations list: identifiers, an event, a label."""

    agency: str
    ref: str
    label: str
    identifiers: Mapping[str, str] = field(default_factory=dict)
    event: Planned | None = None


OPERATIONS = (
    Operation(
        "customs-nl",
        "CN-OPS-1",
        "customs-nl op HARBOUR LIGHT (controlled delivery); desk 3 +31 10 000 0003",
        {"name": "ALVAREZ NUNEZ, Jose", "dob": "03.04.1980", "container": "MSCU 123456-6"},
    ),
    Operation(
        "customs-nl",
        "CN-OPS-2",
        "customs-nl checkpoint Oldenzaal; desk 1 +31 10 000 0001",
        event=Planned(east_m=-6000, radius_m=200, day=0, hours=(5, 12)),
    ),
    Operation(
        "police-nl",
        "PN-OPS-1",
        "police-nl op TULIP (arrest planned); duty officer +31 70 000 0000",
        {"name": "José Álvarez-Núñez", "dob": "1980-04-03"},
    ),
    Operation(
        "police-nl",
        "PN-OPS-2",
        "police-nl op TULIP (intercepted phone); duty officer +31 70 000 0000",
        {"phone": "+32 485 11 22 33"},
    ),
    Operation(
        "police-nl",
        "PN-OPS-3",
        "police-nl traffic check A1 De Poppe; duty officer +31 70 000 0000",
        event=Planned(east_m=0, radius_m=300, day=0, hours=(5, 11)),
    ),
    Operation(
        "border-guard-be",
        "BG-OPS-1",
        "border-guard-be op SCHELDT; ops room +32 2 000 0000",
        {"phone": "0485 11 22 33"},
    ),
    Operation(
        "border-guard-be",
        "BG-OPS-2",
        "border-guard-be op SCHELDT (vehicle); ops room +32 2 000 0000",
        {"plate": "BE:1-ABC-123"},
    ),
    Operation(
        "customs-de",
        "DE-OPS-1",
        "customs-de control A30 Bad Bentheim; HZA Osnabrueck +49 541 000 0000",
        event=Planned(east_m=400, radius_m=250, day=0, hours=(7, 13)),
    ),
    Operation(
        "customs-de",
        "DE-OPS-2",
        "customs-de control A30 Bad Bentheim (next week); HZA Osnabrueck +49 541 000 0000",
        event=Planned(east_m=400, radius_m=250, day=7, hours=(7, 13)),
    ),
    Operation(
        "customs-de",
        "DE-OPS-3",
        "customs-de financial enquiry; HZA Osnabrueck +49 541 000 0000",
        {"iban": "DE75 5121 0800 1245 1261 99"},
    ),
)
"""Every agency's operations (valid from today for 30 days)."""
VALID_DAYS = 30
CONFLICTS = (
    (("customs-nl", "CN-OPS-1"), ("police-nl", "PN-OPS-1"), ("person", "person_year")),
    (("police-nl", "PN-OPS-2"), ("border-guard-be", "BG-OPS-1"), ("phone",)),
    (("police-nl", "PN-OPS-3"), ("customs-de", "DE-OPS-1"), ("event",)),
)
"""What the sweeps must report to both agencies: (agency, ref) twice, the matched types."""
NOT_REPORTED = (("customs-nl", "CN-OPS-2"), ("customs-de", "DE-OPS-2"))
"""The event 6 km away and the event a week later: reported to no one."""
COLUMNS = (
    "ref",
    "name",
    "dob",
    "phone",
    "iban",
    "plate",
    "container",
    "label",
    "valid_from",
    "valid_until",
    "lat",
    "lon",
    "radius_m",
    "start",
    "end",
)


def operation(agency: str, ref: str) -> Operation:
    """The operations record `ref` of `agency`."""
    return next(o for o in OPERATIONS if (o.agency, o.ref) == (agency, ref))


def write_operations(path: Path, agency: str, now: dt.datetime) -> list[Operation]:
    """Writes `agency`'s operations as CSV, dated from `now`; returns them."""
    today = now.astimezone(dt.UTC).date()
    records = [o for o in OPERATIONS if o.agency == agency]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for record in records:
            row = {"ref": record.ref, "label": record.label, **record.identifiers}
            row["valid_from"] = today.isoformat()
            row["valid_until"] = (today + dt.timedelta(days=VALID_DAYS)).isoformat()
            if record.event is not None:
                (lat, lon), (start, end) = record.event.centre, record.event.window(now)
                row |= {"lat": f"{lat:.6f}", "lon": f"{lon:.6f}"}
                row |= {"radius_m": f"{record.event.radius_m:.0f}"}
                row |= {"start": start.isoformat(), "end": end.isoformat()}
            writer.writerow(row)
    return records


def distance_m(a: Planned, b: Planned) -> float:
    """Great-circle distance between two events' centres, in metres (haversine)."""
    (lat1, lon1), (lat2, lon2) = (tuple(map(math.radians, e.centre)) for e in (a, b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(h))


def describe(record: Operation, now: dt.datetime) -> str:
    """What a record holds, for the reader (never sent anywhere)."""
    parts = []
    if "name" in record.identifiers:
        parts.append(f"person {record.identifiers['name']} ({record.identifiers['dob']})")
    parts += [f"{k} {v}" for k, v in record.identifiers.items() if k not in ("name", "dob")]
    if record.event is not None:
        (lat, lon), (start, end) = record.event.centre, record.event.window(now)
        east = record.event.east_m
        where = f"{abs(east) / 1000:g} km {'east' if east > 0 else 'west'} of" if east else "at"
        parts.append(
            f"event {record.event.radius_m:.0f} m around {lat:.5f}, {lon:.5f} ({where} the "
            f"crossing), {start:%a %Y-%m-%d} {start:%H:%M}-{end:%H:%M} UTC"
        )
    return "; ".join(parts)


# -- commands and nodes ----------------------------------------------------------------------


def blindmatch(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs one CLI command and returns its result (NodeError if it fails and `check`)."""
    return blindmatch_all([args], check=check)[0]


def blindmatch_all(
    commands: Sequence[Sequence[str]], check: bool = True
) -> list[subprocess.CompletedProcess[str]]:
    """Runs independent CLI commands at once; returns their results in order.

    On Ctrl-C (or the time limit) each command still running is interrupted as
    Ctrl-C would by hand, and waited for, before the exception goes on.
    """
    with ExitStack() as files:
        running: list[tuple[subprocess.Popen[bytes], IO[str], IO[str]]] = []
        try:
            for args in commands:
                out, err = (
                    files.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8"))
                    for _ in range(2)
                )
                running.append((subprocess.Popen(cli(*args), stdout=out, stderr=err), out, err))
            deadline = time.monotonic() + COMMAND_SECONDS
            for (process, _, _), args in zip(running, commands, strict=True):
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    raise NodeError(
                        f"demo: blindmatch {' '.join(args)} took more than {COMMAND_SECONDS:.0f} s"
                    ) from None
        except BaseException:  # Ctrl-C, or a command over the time limit
            for process, _, _ in running:
                _end(process, signal.SIGINT, 10)
            raise
        texts = []
        for _, stdout, stderr in running:
            stdout.seek(0)
            stderr.seek(0)
            texts.append((stdout.read(), stderr.read()))
    results = [
        subprocess.CompletedProcess(cli(*args), process.returncode, *text)
        for args, (process, _, _), text in zip(commands, running, texts, strict=True)
    ]
    for args, result in zip(commands, results, strict=True):
        if check and result.returncode != 0:
            raise NodeError(f"demo: blindmatch {' '.join(args)} failed: {result.stderr.strip()}")
    return results


def _end(process: subprocess.Popen[Any], sig: int, seconds: float) -> None:
    """Sends `sig` to `process` by pid and waits; SIGKILL once `seconds` have passed."""
    process.send_signal(sig)  # nothing if it has ended already
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    """Returns a TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], T | None], seconds: float, what: str) -> T:
    """Polls `condition` until it returns something true, and returns that.

    Raises NodeError naming `what` after `seconds`.
    """
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise NodeError(f"demo: timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.05)
    return value


def examples() -> dict[str, dict[str, Any]]:
    """Each agency's example node.toml from config/."""
    return {a: tomllib.loads((CONFIG_DIR / a / "node.toml").read_text()) for a in AGENCIES}


def sweep_peers(example: Mapping[str, Any]) -> list[str]:
    """The peers an agency's node sweeps `OPS` with: its policy allows the list and mutual."""
    return sorted(
        peer
        for peer, policy in example["peers"].items()
        if "mutual" in policy["modes"] and (not policy["lists"] or OPS in policy["lists"])
    )


def set_up(root: Path, receiver: Receiver) -> dict[str, Path]:
    """Creates the CA and the nodes from the examples, with fresh ports; returns node dirs.

    Each step runs for the four nodes at once: `init`, each `peer add`, the ingests.
    """
    blindmatch("ca", "init", str(root / "ca"), "--name", "Demo federation CA")
    address = {a: f"127.0.0.1:{free_port()}" for a in AGENCIES}
    nodes = {a: root / a for a in AGENCIES}
    configs = examples()
    blindmatch_all(
        [
            ["init", str(nodes[a]), "--agency", a, "--listen", address[a], "--ca", str(root / "ca")]
            + ["--region", configs[a]["region"]]
            for a in AGENCIES
        ]
    )
    rounds: list[list[list[str]]] = []  # the k-th peer of every node in round k
    for agency, example in configs.items():
        for k, (peer, policy) in enumerate(example["peers"].items()):
            args = ["peer", "add", str(nodes[agency]), "--agency", peer]
            args += ["--address", address[peer], "--modes", ",".join(policy["modes"])]
            args += ["--max-set-size", str(policy["max_set_size"])]
            args += ["--sessions-per-hour", str(policy["sessions_per_hour"])]
            if policy["lists"]:
                args += ["--lists", ",".join(policy["lists"])]
            if policy["release_labels"]:
                args.append("--release-labels")
            rounds[k:] = rounds[k:] or [[]]
            rounds[k].append(args)
    for commands in rounds:
        blindmatch_all(commands)
    for agency, example in configs.items():
        # node.toml by hand, as an operator does while the node is stopped: the example's
        # sweep_poll_seconds, and its webhook pointed at the demo's receiver, fresh secret.
        config = NodeConfig.load(nodes[agency])
        poll = example.get("sweep_poll_seconds", config.sweep_poll_seconds)
        webhook = Webhook(receiver.url(agency), receiver.secret(agency))
        write_config(dataclasses.replace(config, sweep_poll_seconds=poll, webhooks=(webhook,)))
    blindmatch_all(
        [
            ["ingest", str(nodes[a]), "--list", name, "--kind", kind]
            + [str(CONFIG_DIR / a / f"{name}.csv"), *EXPORT_OPTIONS.get(a, ())]
            for a, (name, kind) in LISTS.items()
        ]
    )
    # The operations list the partners agreed on, empty until part 2 loads it.
    empty = root / "empty-ops.csv"
    empty.write_text("ref\n")
    blindmatch_all(
        [
            ["ingest", str(nodes[a]), "--list", OPS, "--kind", "operations", str(empty)]
            + ["--allow-empty"]
            for a in AGENCIES
        ]
    )
    return nodes


class Servers:
    """The nodes' `blindmatch serve` processes; leaving the block stops each by its pid."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def start(self, nodes: Mapping[str, Path]) -> None:
        """Starts `serve` for each node at once, output in NODE.log; waits until each listens."""
        for agency, node in nodes.items():
            log = self.logs[agency] = node.with_suffix(".log")
            with log.open("ab") as out:
                self.processes[agency] = subprocess.Popen(
                    cli("serve", str(node)), stdout=out, stderr=subprocess.STDOUT
                )
        for agency, process in self.processes.items():
            wait_for(
                functools.partial(self._started, agency, process),
                START_SECONDS,
                f"{agency} to serve",
            )
            if process.poll() is not None:
                raise NodeError(f"demo: {agency} did not start: {self.log(agency)[-1000:]}")
            print(f"started {agency} (pid {process.pid})")

    def _started(self, agency: str, process: subprocess.Popen[bytes]) -> bool:
        return self.said(agency, "serving on") or process.poll() is not None

    def log(self, agency: str) -> str:
        """What `agency`'s serve has written so far (complete lines only)."""
        text = self.logs[agency].read_text(encoding="utf-8", errors="replace")
        return text[: text.rfind("\n") + 1]

    def __enter__(self) -> Servers:
        return self

    def said(self, agency: str, text: str) -> bool:
        """Whether `agency`'s serve has logged `text`."""
        return text in self.log(agency)

    def __exit__(self, *exc: object) -> None:
        with _no_ctrl_c():
            for process in self.processes.values():
                process.send_signal(signal.SIGTERM)  # drains, then stops (and its workers)
            deadline = time.monotonic() + STOP_SECONDS
            for process in self.processes.values():
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@contextmanager
def _no_ctrl_c() -> Iterator[None]:
    """Ignores Ctrl-C and SIGTERM for the block (cleaning up, which has its own deadlines)."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- part 1: checks by hand --------------------------------------------------------------------


def session(
    nodes: dict[str, Path], initiator: str, responder: str, mode: str, purpose: str
) -> None:
    """Runs one session and prints what each side learned."""
    own_list, peer_list = LISTS[initiator][0], LISTS[responder][0]
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
    mine = hits(nodes[responder], "--peer", initiator, "--list", peer_list)
    print(f"\n   {responder} sees (its hit records, from 'blindmatch hits'):")
    print(
        _indent(
            format_table(
                ["hit", "ref", "matched on", f"{initiator}'s label"],
                [[str(h["id"]), h["ref"], h["type"], h["peer_label"]] for h in mine],
            )
        )
    )


def hits(node: Path, *options: str) -> list[dict[str, Any]]:
    """The node's hits, from `blindmatch hits --json` (audited, operator "demo")."""
    listing = blindmatch("hits", str(node), *options, "--operator", "demo", "--json")
    found: list[dict[str, Any]] = json.loads(listing.stdout)
    return found


def checks_by_hand(nodes: dict[str, Path]) -> None:
    """Part 1: sessions run with `blindmatch match`, and one refused by policy."""
    print("\n\n#### Part 1: checks run by hand (blindmatch match)")
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
        nodes, "police-nl", "border-guard-be", "count", "volume check before a joint action day"
    )
    session(
        nodes,
        "border-guard-be",
        "police-nl",
        "mutual",
        "attempt beyond police-nl's policy: a foreign partner may deconflict operations only",
    )


def _indent(text: str, by: str = "   ") -> str:
    return "\n".join(by + line for line in text.splitlines())


# -- part 2: deconfliction ---------------------------------------------------------------------

_SWEPT = re.compile(r"sweep: (?P<list>\S+) with (?P<peer>\S+): (?P<outcome>.*)$", re.MULTILINE)
_SESSION = re.compile(r"\(session (?P<id>[0-9a-f]+)\)")


def sweeps_done(
    servers: Servers, agency: str, peers: list[str], since: int
) -> dict[str, str] | None:
    """`agency`'s sweep result per peer, once each has completed on both sides; else None.

    Reads the result lines `serve` logs after offset `since` of its log, and each
    responder's log for the line saying it completed (and recorded its hits).
    """
    results = {m["peer"]: m["outcome"] for m in _SWEPT.finditer(servers.log(agency)[since:])}
    for peer, outcome in results.items():
        if outcome.startswith("failed:"):
            raise NodeError(f"demo: {agency}'s sweep of {OPS} with {peer} {outcome}")
    if set(results) != set(peers):
        return None
    for peer, outcome in results.items():
        found = _SESSION.search(outcome)
        answered = f"responder mutual session {found['id'] if found else '?'} with {agency} on"
        if answered not in servers.log(peer):
            return None
    return results


def load_operations(root: Path, nodes: dict[str, Path], servers: Servers, now: dt.datetime) -> None:
    """Each agency in turn loads its operations; its node sweeps them with every partner."""
    print(
        f"\n\n#### Part 2: deconfliction. Each agency loads its live operations into the list "
        f"'{OPS}' (valid from today for {VALID_DAYS} days).\n"
        f"Its node sweeps the changed list with every partner whose policy allows it, on its "
        f"own (sweep_poll_seconds = 1),\nand notifies its agency's case system of each new hit "
        f"by webhook. The demo runs no sweep: it reads the nodes' logs.\n"
        f"The events are at the A1/A30 Dutch-German border crossing (De Poppe / Bad Bentheim, "
        f"{SITE[0]:.5f}, {SITE[1]:.5f})."
    )
    for agency in AGENCIES:  # the job's first look at the lists, which it does not sweep
        baseline = functools.partial(servers.said, agency, "operations list(s) as of now")
        wait_for(baseline, START_SECONDS, f"{agency}'s sweep job to start")
    peers = {a: sweep_peers(e) for a, e in examples().items()}
    for agency in AGENCIES:
        path = root / f"{agency}-{OPS}.csv"
        records = write_operations(path, agency, now)
        print(f"\n== {agency} loads {len(records)} records (blindmatch ingest --kind operations):")
        for record in records:
            print(f"   {record.ref}  {describe(record, now)}")
        since = len(servers.log(agency))
        started = time.monotonic()
        blindmatch("ingest", str(nodes[agency]), "--list", OPS, "--kind", "operations", str(path))
        done = wait_for(
            functools.partial(sweeps_done, servers, agency, peers[agency], since),
            SWEEP_SECONDS,
            f"{agency}'s node to sweep {OPS} with {', '.join(peers[agency])}",
        )
        print(
            f"   its node swept {OPS} on its own within {time.monotonic() - started:.1f} s: "
            + ", ".join(f"with {p} {_SESSION.sub('', done[p]).strip()}" for p in sorted(done))
        )


def await_deliveries(nodes: dict[str, Path], receiver: Receiver) -> dict[str, list[dict[str, Any]]]:
    """Waits until the receiver holds a verified delivery of every hit; returns the hits."""
    listings = blindmatch_all(
        [["hits", str(node), "--operator", "demo", "--json"] for node in nodes.values()]
    )
    every = {a: json.loads(listing.stdout) for a, listing in zip(nodes, listings, strict=True)}

    def delivered() -> bool:
        if receiver.rejected():
            bad = receiver.rejected()[0]
            raise NodeError(f"demo: a delivery to {bad.agency}'s webhook had a bad signature")
        got = {(d.agency, d.delivery) for d in receiver.deliveries()}
        return all((a, str(h["id"])) in got for a, found in every.items() for h in found)

    wait_for(delivered, DELIVERY_SECONDS, "every hit's notification")
    return every


def print_notifications(deliveries: list[Delivery]) -> None:
    """What each agency's case system was told about its operations, one block per record."""
    print(
        "\n\n#### What each agency's case system was told (webhook POSTs; each "
        "X-Blindmatch-Signature checked with the agency's secret before the body was read)"
    )
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    ordered = sorted(
        (d for d in deliveries if d.body is not None and d.body["list"] == OPS),
        key=lambda d: (AGENCIES.index(d.agency), int(d.delivery)),
    )
    for d in ordered:
        assert d.body is not None
        groups.setdefault((d.agency, d.body["ref"], d.body["peer"]), []).append(d.body)
    for (agency, ref, peer), bodies in groups.items():
        first = bodies[0]
        found_by = "its own sweep" if first["role"] == "initiator" else f"{peer}'s sweep"
        ids = ("hits " if len(bodies) > 1 else "hit ") + ", ".join(str(b["hit_id"]) for b in bodies)
        types = ", ".join(b["type"] for b in bodies)
        print(f"\n-> {agency} ({ids}; signature checked): {OPS} {ref} shares {types} with {peer}")
        print(f"   found by {found_by}; {peer}'s label: {first['peer_label'] or '(withheld)'}")
        print(f"   next step: {first['next_step']}")
    others = [d for d in deliveries if d.body is not None and d.body["list"] != OPS]
    counts = ", ".join(f"{a} {sum(d.agency == a for d in others)}" for a in AGENCIES if a in LISTS)
    print(
        f"\n-> and {len(others)} notifications of the new hits of part 1 ({counts}), "
        f"every signature checked"
    )


def check_reported(every: dict[str, list[dict[str, Any]]], deliveries: list[Delivery]) -> bool:
    """Checks the conflicts against the nodes' hits and the deliveries; prints, returns if ok."""
    reported = {
        (a, h["ref"], h["type"], h["peer"])
        for a, found in every.items()
        for h in found
        if h["list"] == OPS
    }
    told = {
        (d.agency, d.body["ref"], d.body["type"], d.body["peer"])
        for d in deliveries
        if d.body is not None and d.body["list"] == OPS
    }
    expected = {
        (own[0], own[1], kind, other[0])
        for first, second, kinds in CONFLICTS
        for own, other in ((first, second), (second, first))
        for kind in kinds
    }
    ok = True
    print("\n\n#### Checked against every node's hits (blindmatch hits --json) and every delivery")
    for first, second, kinds in CONFLICTS:
        both = all(
            (own[0], own[1], kind, other[0]) in reported & told
            for own, other in ((first, second), (second, first))
            for kind in kinds
        )
        ok &= both
        what = "the events 400 m apart" if kinds == ("event",) else f"the {kinds[0]}"
        print(
            f"   {'reported to both agencies' if both else 'NOT REPORTED TO BOTH'}: {what} "
            f"({first[0]} {first[1]}, {second[0]} {second[1]})"
        )
    near = operation("police-nl", "PN-OPS-3").event
    for agency, ref in NOT_REPORTED:
        record = operation(agency, ref)
        assert record.event is not None and near is not None
        seen = [r for r in reported | told if r[:2] == (agency, ref)]
        ok &= not seen
        verdict = "not reported" if not seen else f"REPORTED ({len(seen)} hits)"
        if record.event.day:
            why = (
                f"the same place as DE-OPS-1, {record.event.day} days later: no common 6-hour slot"
            )
        else:
            others = [operation("police-nl", "PN-OPS-3"), operation("customs-de", "DE-OPS-1")]
            gaps = " and ".join(
                f"{distance_m(record.event, o.event) / 1000:.1f} km from {o.agency} {o.ref}"
                for o in others
                if o.event is not None
            )
            bound = false_positive_distance_m(record.event.radius_m, near.radius_m) / 1000
            why = (
                f"an event {gaps}, the same hours: further apart than r1 + r2 + 3.1 km "
                f"({bound:.1f} km), so never in the same H3 cell"
            )
        print(f"   {verdict}: {agency} {ref}, {why}")
    if reported == told == expected:
        print(f"   nothing else in '{OPS}' was reported, to anyone")
    else:
        ok = False
        print(f"   NOT AS EXPECTED: hits {sorted(reported)}, notified {sorted(told)}")
    return ok


# -- the demo ---------------------------------------------------------------------------------


def run(root: Path, now: dt.datetime) -> None:
    """Runs the demonstration in `root`; raises NodeError if anything went wrong."""
    print(f"Setting up a federation CA and four agency nodes in {root} ...")
    with Receiver(AGENCIES) as receiver:
        nodes = set_up(root, receiver)
        print("customs-nl's lists (blindmatch lists):")
        print(_indent(blindmatch("lists", str(nodes["customs-nl"])).stdout.rstrip()))
        print(
            f"webhook receiver (the agencies' case systems) on http://127.0.0.1:{receiver.port}/"
            "AGENCY; each node.toml's [[notify.webhook]] has its own random secret"
        )
        with Servers() as servers:
            servers.start(nodes)
            checks_by_hand(nodes)
            load_operations(root, nodes, servers, now)
            every = await_deliveries(nodes, receiver)
            deliveries = receiver.deliveries()
            print_notifications(deliveries)
            ok = check_reported(every, deliveries)
        print("\nnodes stopped; audit logs:")
        checks = blindmatch_all([["audit", "verify", str(node)] for node in nodes.values()])
        for agency, check in zip(nodes, checks, strict=True):
            print(f"   {agency}: {check.stdout.strip()}")
    print("webhook receiver stopped")
    if not ok:
        raise NodeError("demo: the sweeps did not report what they should (see above)")


def main(now: dt.datetime | None = None) -> int:
    """Runs the demonstration; returns the exit code (NodeError: the CLI reports it, exit 1)."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # progress shows in a pipe too
    try:
        with tempfile.TemporaryDirectory(
            prefix="blindmatch-demo-", ignore_cleanup_errors=True
        ) as tmp:
            run(Path(tmp), now or dt.datetime.now(dt.UTC))
        print(f"removed {tmp}")
    except KeyboardInterrupt:
        print(
            "\nblindmatch: demo interrupted: nodes stopped, webhook receiver stopped, "
            "temporary directory removed",
            file=sys.stderr,
        )
        return 130
    return 0
