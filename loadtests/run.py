"""`make loadtest`: a throw-away federation, its nodes served, locust headless against them.

Everything goes through the real CLI in a temporary directory: a federation
CA; the target node police-nl with a generated list of TARGET_RECORDS records
(``targets``) and a list ``load`` of LOAD_SET_SIZE elements; the load
generator customs-nl with its own ``load`` list sharing half of those
entities, written in other notations; peer policies that allow customs-nl
mutual, count and screen sessions without an hourly, concurrency or daily
screening limit that a load test would hit. For the "stalled peers" scenario
(`add_stalling_peer`) a third agency, stalling-nl, with its own node and
certificate, is a peer of police-nl allowed STALLED_MAX_CONCURRENT (1)
sessions at once, and police-nl aborts a stream idle for IDLE_SECONDS (5).
For screening through the local API (`add_screening_partner`) a fourth
agency, border-guard-be, holds a ``watchlist`` of API_ENTRIES identifiers
(`loadtests.agency`: e-mail addresses, phones, passports) that police-nl may
screen against (modes ``screen``, no daily budget it would reach); police-nl
names it as its ``[[screen.target]]``, and ``blindmatch user add`` gives an
analyst of police-nl's API a bearer token.

Then ``blindmatch serve border-guard-be``, ``blindmatch serve police-nl
--workers WORKERS`` (its API on a free loopback port, read from its log), a
first screening through that API that must succeed (police-nl has fetched the
partner's encoded set), locust for DURATION seconds with USERS users
(`loadtests/locustfile.py`: customs-nl's mutual, count and screening users,
stalling-nl's stalled users and police-nl's own agency screening one
identifier or a batch of up to 20 through ``POST /v1/screen``), reports in
``loadtests/reports/latest_stats.csv``, ``latest.json`` (the final figures the
verdict reads) and ``latest.html``, and every process it started is stopped by
its id (SIGTERM, then SIGKILL after a grace period).

Exit code 0 only if locust ran customs-nl's requests (sessions, screening
fetches and queries) and the agency's API queries, none of them failed (an API
answer fails unless it is 200, no target failed and exactly the identifiers the
partner holds hit) and each request name's p95 is at most P95_MS (the stalled
streams, which last up to IDLE_SECONDS by design, are reported on their own:
how many were refused at once, aborted when idle, or failed).
Environment: DURATION (60), USERS (10), WORKERS (1), P95_MS (5000),
LOAD_SET_SIZE (1000), TARGET_RECORDS (10000), IDLE_SECONDS (5),
STALLED_MAX_CONCURRENT (1), API_ENTRIES (10000), LOAD_PROCESSES (locust worker
processes; 0 = one process, the default: the machine's cores are shared with
the nodes under test), plus the locustfile's LOAD_WEIGHT_* (LOAD_WEIGHT_STALLED=0
turns the stalled peers off, LOAD_WEIGHT_API=0 the API users and the partner)
and `loadtests/agency_user.py`'s LOAD_API_*.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from loadtests.agency import KINDS, REQUEST_PREFIX, problem, screen_request, write_list
from node.cli.demo import blindmatch, free_port
from node.data.sample import COLUMNS, sample_records, write_csv
from node.setup.config import NodeConfig, ScreenTarget, write_config

__all__ = [
    "API",
    "PARTNER",
    "PEER",
    "Federation",
    "Scenario",
    "add_screening_partner",
    "add_stalling_peer",
    "api_url",
    "first_screening",
    "group",
    "main",
    "make_federation",
    "run_headless",
    "run_locust",
    "scenarios",
    "serve",
    "stop",
    "verdict",
]

HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "locustfile.py"
REPORTS = HERE / "reports"
TARGET, GENERATOR, STALLING = "police-nl", "customs-nl", "stalling-nl"
PARTNER, WATCHLIST = "border-guard-be", "watchlist"  # whose list the target's API screens
API_USER = "load test"  # the analyst of the target's API
STALLED = "stalled"  # the locustfile's request name for a stalled stream
PEER, API = "peer", "api"  # the verdict's groups of requests: the generator's, the API's
# One-element identifier columns whose values do not collide in a few thousand
# entities (plates and IMO numbers would), so a list of n rows holds n elements.
# Not passports: each yields two elements (passport and passport_number).
_ONE_ELEMENT = ("phone", "email", "iban", "container", "awb")


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
    staller: Path | None = None  # the stalling agency's node, once added
    partner: Path | None = None  # the screened partner's node, once added
    api_token: str = ""  # an analyst's bearer token for the target's API
    api_entries: int = 0  # identifiers in the partner's list (`loadtests.agency`)
    api_kinds: tuple[str, ...] = KINDS


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
            keep = {"ref", "label", column}
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
            "--max-concurrent", "100000", "--max-set-size", "100000000",
            "--screen-budget-per-day", "1000000000000",
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


def add_stalling_peer(
    federation: Federation, max_concurrent: int = 1, idle_seconds: int = 5
) -> Federation:
    """Adds the stalling agency: its node (same CA), a peer of the target that may hold
    `max_concurrent` sessions at once (no hourly limit); the target aborts streams idle
    for `idle_seconds`. Call it before `serve`."""
    node = federation.root / STALLING
    blindmatch(
        "init", str(node), "--agency", STALLING, "--listen", f"127.0.0.1:{free_port()}",
        "--ca", str(federation.root / "ca"), "--region", "NL",
    )  # fmt: skip
    blindmatch(
        "peer", "add", str(federation.target), "--agency", STALLING,
        "--address", NodeConfig.load(node).listen, "--modes", "mutual,count",
        "--sessions-per-hour", "1000000000", "--max-concurrent", str(max_concurrent),
    )  # fmt: skip
    config = NodeConfig.load(federation.target)
    write_config(dataclasses.replace(config, idle_seconds=idle_seconds))
    return dataclasses.replace(federation, staller=node)


def add_screening_partner(
    federation: Federation,
    entries: int = 10_000,
    kinds: Sequence[str] = KINDS,
    encode_now: bool = False,
) -> Federation:
    """Adds the partner whose list the target's API screens: its node (same CA) with a
    ``watchlist`` of `entries` identifiers of `kinds` (`loadtests.agency.write_list`), a
    policy that lets the target screen it without a limit a load test would reach, the
    target's peer entry and ``[[screen.target]]`` for it, and an analyst of the target's API
    (``blindmatch user add``: its token is in the result). With `encode_now` the partner
    encodes its list now (``blindmatch epoch rotate``), not at the first fetch.
    Call it before `serve`."""
    node = federation.root / PARTNER
    address = f"127.0.0.1:{free_port()}"
    blindmatch(
        "init", str(node), "--agency", PARTNER, "--listen", address,
        "--ca", str(federation.root / "ca"), "--region", "BE",
    )  # fmt: skip
    blindmatch(
        "peer", "add", str(node), "--agency", TARGET, "--address", federation.address,
        "--modes", "screen", "--lists", WATCHLIST, "--release-labels",
        "--sessions-per-hour", "1000000000", "--max-concurrent", "100000",
        "--max-set-size", "100000000", "--screen-budget-per-day", "1000000000000",
    )  # fmt: skip
    path = write_list(federation.root / f"{PARTNER}-{WATCHLIST}.csv", entries, kinds)
    blindmatch("ingest", str(node), "--list", WATCHLIST, str(path))
    path.unlink()
    if encode_now:
        blindmatch("epoch", "rotate", str(node), "--list", WATCHLIST)
    blindmatch(
        "peer", "add", str(federation.target), "--agency", PARTNER, "--address", address,
        "--modes", "screen",
    )  # fmt: skip
    config = NodeConfig.load(federation.target)
    targets = (*config.screen_targets, ScreenTarget(PARTNER, WATCHLIST))
    write_config(dataclasses.replace(config, screen_targets=targets))
    added = blindmatch(
        "user", "add", str(federation.target), "--name", API_USER, "--role", "analyst", "--json"
    )
    token = json.loads(added.stdout)["token"]
    return dataclasses.replace(
        federation, partner=node, api_token=token, api_entries=entries, api_kinds=tuple(kinds)
    )


def serve(
    node_dir: Path,
    workers: int,
    log_path: Path,
    timeout: float = 60.0,
    executor: str | None = None,
) -> subprocess.Popen:
    """Starts `blindmatch serve --workers N [--executor E]` in its own process group; waits for
    every worker."""
    log = open(log_path, "w")  # noqa: SIM115 (closed with the process, by stop())
    options = ["--executor", executor] if executor else []
    process = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "serve", str(node_dir), "--workers", str(workers)]
        + options,
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


def api_url(log_path: Path, process: subprocess.Popen | None = None, timeout: float = 60.0) -> str:
    """The local API's base URL a served node printed ("AGENCY api on URL (pid N)") in its
    log; SystemExit if it prints none within `timeout` (or `process` ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            if " api on http" in line:
                return line.split(" api on ", 1)[1].split()[0].rstrip("/")
        if process is not None and process.poll() is not None:
            break
        time.sleep(0.1)
    log = log_path.read_text(errors="replace")
    raise SystemExit(f"no API address in {log_path} within {timeout:.0f} s:\n{log}")


def first_screening(
    api: str,
    token: str,
    kinds: Sequence[str] = KINDS,
    timeout: float = 120.0,
    processes: int = 1,
) -> float:
    """Screens identifier 0 (in the partner's list) through the API at `api` until it is
    answered with its hit and no target error — the node has the partner's encoded set in
    memory; returns the seconds that took (SystemExit with the last answer past `timeout`).

    For a node served by several `processes`, each with its own set, 4 answers in a row
    per process must succeed, each on a new connection (which any of them may accept)."""
    body = screen_request([0], kinds, "load test: first screening, the encoded set fetched")
    headers = {"Authorization": f"Bearer {token}"}
    start = time.monotonic()
    last, in_a_row = "no answer", 0
    while time.monotonic() - start < timeout:
        try:
            response = httpx.post(f"{api}/v1/screen", json=body, headers=headers, timeout=30.0)
            if response.status_code == 200 and problem(response.json(), [0], 1) is None:
                in_a_row += 1
                if processes <= 1 or in_a_row >= 4 * processes:
                    return time.monotonic() - start
                continue
            last = f"HTTP {response.status_code}: {response.text[:400]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        in_a_row = 0
        time.sleep(0.5)
    raise SystemExit(f"screening through {api} did not succeed within {timeout:.0f} s: {last}")


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
    extra_env: Mapping[str, str] | None = None,
    api: str | None = None,
) -> int:
    """Runs locust headless against the target; returns its exit code.

    With `api` (the target's API URL) and a partner added, the agency's API users run too.
    Reports at `prefix`: ``_stats.csv`` and the others of ``--csv``, and ``.json``, the
    final statistics (`scenarios`)."""
    defaults = {}  # unless this process's environment sets them
    if federation.expected_matches is not None:
        defaults["LOAD_EXPECT_MATCHES"] = str(federation.expected_matches)
    if federation.staller is not None:
        idle = NodeConfig.load(federation.target).idle_seconds
        defaults["LOAD_STALLED_NODE_DIR"] = str(federation.staller)
        defaults["LOAD_STALLED_TIMEOUT"] = str(4 * idle + 10)
    env = {name: value for name, value in defaults.items() if name not in os.environ}
    env |= {
        "LOAD_NODE_DIR": str(federation.generator),
        "LOAD_PEER": TARGET,
        "LOAD_LIST": "load",
        "LOAD_SET_SIZE": str(federation.set_size),
    }
    if api is not None and federation.partner is not None:
        env.update(
            {
                "LOAD_API_URL": api,
                "LOAD_API_TOKEN": federation.api_token,
                "LOAD_API_ENTRIES": str(federation.api_entries),
                "LOAD_API_KINDS": ",".join(federation.api_kinds),
            }
        )
    return run_headless(
        LOCUSTFILE,
        f"grpcs://{federation.address}",
        users,
        duration,
        prefix,
        {**env, **(extra_env or {})},
        html,
        processes,
    )


def run_headless(
    locustfile: Path,
    host: str,
    users: int,
    duration: int,
    prefix: Path,
    env: Mapping[str, str],
    html: Path | None = None,
    processes: int = 0,
) -> int:
    """Runs ``locust -f LOCUSTFILE --headless`` for `duration` seconds with `users` users (all
    started in the first second), `env` over this process's environment, in its own process
    group from the repository's root; returns its exit code. It is stopped by its pid if it
    outlives its time (SIGTERM, then SIGKILL of its group), also when this one is interrupted.

    Reports at `prefix`: ``_stats.csv`` and the others of ``--csv``, and ``.json``, the
    final statistics (`scenarios`)."""
    command = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
        "-u", str(users), "-r", str(users), "-t", f"{duration}s", "--stop-timeout", "60",
        "--csv", str(prefix), "--json-file", str(prefix), "--only-summary",
        "--host", host, "--loglevel", "WARNING",
    ]  # fmt: skip
    if html is not None:
        command += ["--html", str(html)]
    if processes > 1:
        command += ["--processes", str(processes)]
    prefix.parent.mkdir(parents=True, exist_ok=True)
    # From the repository's root, so a locustfile imports `loadtests.*`.
    process = subprocess.Popen(
        command, env={**os.environ, **env}, cwd=HERE.parent, start_new_session=True
    )
    try:
        return process.wait(timeout=duration + 180)
    except subprocess.TimeoutExpired:
        stop(process, grace=10)
        return -1
    finally:
        stop(process, grace=10)


@dataclass(frozen=True)
class Scenario:
    """One request name's final figures, from locust's ``--json-file`` statistics."""

    name: str
    requests: int
    failures: int
    per_second: float
    median_ms: float
    p95_ms: float
    length: int  # the response lengths summed: for the stalled streams, those aborted

    def line(self) -> str:
        """The figures as the harness prints them."""
        if self.name == STALLED:
            refused = self.requests - self.failures - self.length
            return (
                f"{self.name:<14} {self.requests:>6} streams: {self.length} aborted after "
                f"idle_seconds, {refused} refused at once, {self.failures} failed"
            )
        return (
            f"{self.name:<14} {self.requests:>6} requests, {self.failures} failed, "
            f"{self.per_second:.2f}/s, median {self.median_ms:.0f} ms, p95 {self.p95_ms:.0f} ms"
        )


def _percentile(times: dict[str, int], fraction: float) -> float:
    """The response time (ms, as locust rounds it) at `fraction`, by locust's own rule."""
    total = sum(times.values())
    seen = 0
    for ms, count in sorted(((float(ms), n) for ms, n in times.items()), reverse=True):
        seen += count
        if total - seen <= int(total * fraction):
            return ms
    return float("nan")


def scenarios(stats_json: Path) -> dict[str, Scenario]:
    """Each request name's figures from the statistics locust writes when it exits.

    (Its ``*_stats.csv`` is rewritten every 2 s and can miss the last requests.)
    """
    entries = json.loads(stats_json.read_text())
    first = min((e["start_time"] for e in entries), default=0.0)
    last = max((e["last_request_timestamp"] or first for e in entries), default=first)
    seconds = max(last - first, 1e-3)  # the run, from its first request to its last
    return {
        e["name"]: Scenario(
            e["name"],
            e["num_requests"],
            e["num_failures"],
            e["num_requests"] / seconds,
            _percentile(e["response_times"], 0.5),
            _percentile(e["response_times"], 0.95),
            e["total_content_length"],
        )
        for e in sorted(entries, key=lambda e: e["name"])
    }


def group(name: str) -> str:
    """The verdict's group of a request name: `STALLED`, `API` (the agency's queries through
    the target's API) or `PEER` (the generator's sessions and queries over gRPC)."""
    if name == STALLED:
        return STALLED
    return API if name.startswith(REQUEST_PREFIX) else PEER


def verdict(stats_json: Path, p95_ms: float, expected: Sequence[str] = (PEER,)) -> tuple[bool, str]:
    """Whether a run passes, and a summary: one line a request name.

    It passes if requests of every `expected` group ran (`PEER`: the generator's sessions
    and screening over gRPC; `API`: the agency's queries through the target's API), none but
    the stalled streams failed and each name's p95 is within `p95_ms`, and no stalled stream
    ended other than refused at once or aborted by the idle timeout (their p95 is the idle
    time).
    """
    rows = scenarios(stats_json)
    timed = [row for name, row in rows.items() if name != STALLED]
    stalled = rows.get(STALLED)
    missing = [g for g in expected if not any(r.requests for n, r in rows.items() if group(n) == g)]
    ok = (
        not missing
        and all(row.failures == 0 and row.p95_ms <= p95_ms for row in timed)
        and (stalled is None or stalled.failures == 0)
    )
    lines = [f"  {row.line()}" for row in rows.values()]
    lines += [f"  no {g} requests ran" for g in missing]
    return ok, "\n".join([f"p95 limit {p95_ms:.0f} ms (all but {STALLED})", *lines])


def main() -> int:
    """Runs the load test as `make loadtest` configures it; returns the exit code."""
    duration = _env_int("DURATION", 60)
    users = _env_int("USERS", 10)
    workers = _env_int("WORKERS", 1)
    p95_ms = float(_env_int("P95_MS", 5000))
    set_size = _env_int("LOAD_SET_SIZE", 1000)
    idle = _env_int("IDLE_SECONDS", 5)
    with_api = _env_int("LOAD_WEIGHT_API", 2) > 0
    prefix = REPORTS / "latest"
    for stale in REPORTS.glob("latest*"):
        stale.unlink()
    with (
        tempfile.TemporaryDirectory(prefix="blindmatch-load-") as tmp,
        contextlib.ExitStack() as running,  # the servers, stopped by pid in reverse order
    ):
        root = Path(tmp)
        print(f"creating a throw-away federation in {root} ...", flush=True)
        federation = make_federation(root, set_size, _env_int("TARGET_RECORDS", 10_000))
        federation = add_stalling_peer(federation, _env_int("STALLED_MAX_CONCURRENT", 1), idle)
        if with_api:
            federation = add_screening_partner(federation, _env_int("API_ENTRIES", 10_000))
        if federation.partner is not None:
            running.callback(stop, serve(federation.partner, 1, root / f"{PARTNER}.log"))
        log = root / "serve.log"
        server = serve(federation.target, workers, log)
        running.callback(stop, server)
        api = None
        if federation.partner is not None:
            api = api_url(log, server)
            seconds = first_screening(
                api, federation.api_token, federation.api_kinds, processes=workers
            )
            print(
                f"{TARGET} api on {api}: screens against {PARTNER}'s {WATCHLIST} of "
                f"{federation.api_entries:,} identifiers (first answer after {seconds:.1f} s)",
                flush=True,
            )
        print(
            f"{TARGET} serving on {federation.address} ({workers} worker(s), idle_seconds "
            f"{idle}); locust: {users} users for {duration} s, {set_size}-element sessions, "
            f"{STALLING} stalling" + (", agency API users" if api else ""),
            flush=True,
        )
        run_locust(
            federation,
            users,
            duration,
            prefix,
            REPORTS / "latest.html",
            _env_int("LOAD_PROCESSES", 0),
            api=api,
        )
        running.close()
        stats = Path(f"{prefix}.json")
        if not stats.exists():
            print("loadtest: FAILED: locust wrote no statistics", file=sys.stderr)
            return 1
        ok, summary = verdict(stats, p95_ms, (PEER, API) if api else (PEER,))
        print(f"loadtest: {'passed' if ok else 'FAILED'}: {summary}")
        print(f"reports: {prefix}_stats.csv, {stats} and {REPORTS / 'latest.html'}")
        failures = Path(f"{prefix}_failures.csv")
        if failures.exists() and len(failures.read_text().splitlines()) > 1:
            print(failures.read_text(), file=sys.stderr)
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
