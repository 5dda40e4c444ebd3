"""`make loadtest`: a throw-away federation, the target node served, locust headless against it.

Everything goes through the real CLI in a temporary directory: a federation
CA; the target node police-nl with a generated list of TARGET_RECORDS records
(``targets``) and a list ``load`` of LOAD_SET_SIZE elements; the load
generator customs-nl with its own ``load`` list sharing half of those
entities, written in other notations; peer policies that allow customs-nl
mutual, count and screen sessions without an hourly limit or a daily screening
budget that a load test would hit.
Then ``blindmatch serve police-nl --workers WORKERS``, locust for DURATION
seconds with USERS users (`loadtests/locustfile.py`), reports in
``loadtests/reports/latest_stats.csv`` and ``latest.html``, and every process
it started is stopped by its id (SIGTERM, then SIGKILL after a grace period).

Exit code 0 only if locust ran requests (sessions, screening fetches and
queries), none failed and the aggregated p95 is at most P95_MS. Environment:
DURATION (60), USERS (10), WORKERS (1), P95_MS (5000), LOAD_SET_SIZE (1000),
TARGET_RECORDS (10000), LOAD_PROCESSES (locust worker processes; 0 = one
process, the default: the machine's cores are shared with the node under test),
plus the locustfile's LOAD_WEIGHT_*.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from node.cli.demo import blindmatch, free_port
from node.data.sample import COLUMNS, sample_records, write_csv

__all__ = ["Federation", "main", "make_federation", "run_locust", "serve", "stop"]

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
REPORTS = HERE / "reports"
TARGET, GENERATOR = "police-nl", "customs-nl"
# One-element identifier columns whose values do not collide in a few thousand
# entities (plates and IMO numbers would), so a list of n rows holds n elements.
_ONE_ELEMENT = ("passport", "phone", "email", "iban", "container", "awb")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


@dataclass(frozen=True)
class Federation:
    """The throw-away federation's node directories, the target's address and the overlap."""

    root: Path
    target: Path
    generator: Path
    address: str
    set_size: int
    expected_matches: int | None


def _write_load_list(path: Path, skip: int, count: int, style_seed: int) -> Path:
    """Writes sample entities `skip` .. `skip + count` that have a one-element identifier,
    keeping only that identifier, so the list holds `count` elements."""
    kept = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in sample_records(10 * (skip + count) + 100, seed=7, style_seed=style_seed):
            column = next((c for c in _ONE_ELEMENT if row[c]), None)
            if column is None:
                continue
            kept += 1
            if kept <= skip:
                continue
            keep = {"ref", "label", column} | (
                {"passport_country"} if column == "passport" else set()
            )
            writer.writerow([row[c] if c in keep else "" for c in COLUMNS])
            if kept == skip + count:
                break
    return path


def make_federation(root: Path, set_size: int = 1000, target_records: int = 10_000) -> Federation:
    """Creates the CA, the target and the generator nodes with their lists and policies."""
    blindmatch("ca", "init", str(root / "ca"), "--name", "Load-test federation CA")
    address = {TARGET: f"127.0.0.1:{free_port()}", GENERATOR: f"127.0.0.1:{free_port()}"}
    nodes = {agency: root / agency for agency in address}
    for agency, node in nodes.items():
        blindmatch(
            "init", str(node), "--agency", agency, "--listen", address[agency],
            "--ca", str(root / "ca"), "--region", "NL",
        )  # fmt: skip
        peer = GENERATOR if agency == TARGET else TARGET
        blindmatch(
            "peer", "add", str(node), "--agency", peer, "--address", address[peer],
            "--modes", "mutual,count,screen", "--sessions-per-hour", "1000000000",
            "--max-set-size", "100000000", "--screen-budget-per-day", "1000000000000",
        )  # fmt: skip
    targets = root / "targets.csv"
    write_csv(targets, target_records, seed=1)
    blindmatch("ingest", str(nodes[TARGET]), "--list", "targets", str(targets))
    skip = {TARGET: 0, GENERATOR: set_size // 2}
    elements = {}
    for style, (agency, node) in enumerate(nodes.items()):
        path = _write_load_list(root / f"load-{agency}.csv", skip[agency], set_size, 100 + style)
        result = json.loads(
            blindmatch("ingest", str(node), "--list", "load", str(path), "--json").stdout
        )
        elements[agency] = result["elements"]
    exact = all(count == set_size for count in elements.values())
    return Federation(
        root,
        nodes[TARGET],
        nodes[GENERATOR],
        address[TARGET],
        set_size,
        set_size - set_size // 2 if exact else None,
    )


def serve(node_dir: Path, workers: int, log_path: Path, timeout: float = 60.0) -> subprocess.Popen:
    """Starts `blindmatch serve --workers N` in its own process group; waits for every worker."""
    log = open(log_path, "w")  # noqa: SIM115 (closed with the process, by stop())
    process = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "serve", str(node_dir), "--workers", str(workers)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while len(serving_pids(log_path)) < workers:
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise SystemExit(f"{node_dir.name} did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    return process


def serving_pids(log_path: Path) -> set[int]:
    """The pids of the server processes that printed "serving on ... (pid N)" in the log."""
    return {
        int(line.rsplit("(pid ", 1)[1].rstrip(")\n"))
        for line in log_path.read_text().splitlines()
        if " serving on " in line and "(pid " in line
    }


def stop(process: subprocess.Popen, grace: float = 45.0) -> None:
    """SIGTERM to a process we started (a server forwards it to its workers), then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # its own group: it and its workers
            process.wait()


def run_locust(
    federation: Federation,
    users: int,
    duration: int,
    prefix: Path,
    html: Path | None = None,
    processes: int = 0,
    extra_env: dict[str, str] | None = None,
) -> int:
    """Runs locust headless against the target; returns its exit code (reports at `prefix`)."""
    env = {
        **os.environ,
        "LOAD_NODE_DIR": str(federation.generator),
        "LOAD_PEER": TARGET,
        "LOAD_LIST": "load",
        "LOAD_SET_SIZE": str(federation.set_size),
        **(extra_env or {}),
    }
    if federation.expected_matches is not None:
        env.setdefault("LOAD_EXPECT_MATCHES", str(federation.expected_matches))
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", str(users), "-r", str(users), "-t", f"{duration}s", "--stop-timeout", "60",
        "--csv", str(prefix), "--host", f"grpcs://{federation.address}", "--only-summary",
        "--loglevel", "WARNING",
    ]  # fmt: skip
    if html is not None:
        command += ["--html", str(html)]
    if processes > 1:
        command += ["--processes", str(processes)]
    prefix.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        return process.wait(timeout=duration + 180)
    except subprocess.TimeoutExpired:
        stop(process, grace=10)
        return -1
    finally:
        stop(process, grace=10)


def aggregated(stats_csv: Path) -> dict[str, str]:
    """The "Aggregated" row of locust's `*_stats.csv`."""
    with open(stats_csv, newline="") as f:
        for row in csv.DictReader(f):
            if row["Name"] == "Aggregated":
                return row
    raise SystemExit(f"{stats_csv} has no Aggregated row")


def verdict(stats_csv: Path, p95_ms: float) -> tuple[bool, str]:
    """Whether a run passes (requests ran, none failed, p95 within bound), and a summary line."""
    row = aggregated(stats_csv)
    requests, failures = int(row["Request Count"]), int(row["Failure Count"])
    p95 = float(row["95%"] or "nan")
    summary = (
        f"{requests} requests, {failures} failed, {float(row['Requests/s']):.2f} requests/s, "
        f"median {row['50%']} ms, p95 {p95:.0f} ms (limit {p95_ms:.0f} ms)"
    )
    return requests > 0 and failures == 0 and p95 <= p95_ms, summary


def main() -> int:
    """Runs the load test as `make loadtest` configures it; returns the exit code."""
    duration = _env_int("DURATION", 60)
    users = _env_int("USERS", 10)
    workers = _env_int("WORKERS", 1)
    p95_ms = float(_env_int("P95_MS", 5000))
    set_size = _env_int("LOAD_SET_SIZE", 1000)
    prefix = REPORTS / "latest"
    for stale in REPORTS.glob("latest*"):
        stale.unlink()
    with tempfile.TemporaryDirectory(prefix="blindmatch-load-") as tmp:
        root = Path(tmp)
        print(f"creating a throw-away federation in {root} ...", flush=True)
        federation = make_federation(root, set_size, _env_int("TARGET_RECORDS", 10_000))
        server = serve(federation.target, workers, root / "serve.log")
        print(
            f"{TARGET} serving on {federation.address} ({workers} worker(s)); "
            f"locust: {users} users for {duration} s, {set_size}-element sessions",
            flush=True,
        )
        try:
            run_locust(
                federation,
                users,
                duration,
                prefix,
                REPORTS / "latest.html",
                _env_int("LOAD_PROCESSES", 0),
            )
        finally:
            stop(server)
        stats = Path(f"{prefix}_stats.csv")
        if not stats.exists():
            print("loadtest: FAILED: locust wrote no statistics", file=sys.stderr)
            return 1
        ok, summary = verdict(stats, p95_ms)
        print(f"loadtest: {'passed' if ok else 'FAILED'}: {summary}")
        print(f"reports: {stats} and {REPORTS / 'latest.html'}")
        if not ok:
            failures = Path(f"{prefix}_failures.csv")
            if failures.exists():
                print(failures.read_text(), file=sys.stderr)
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
