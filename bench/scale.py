"""Scale (issue 15): 1,000,000 x 1,000,000 mutual between two served nodes over mTLS, and
each side's peak memory per element.

Two nodes are made with the real CLI in a throwaway directory (`bench.common.init_node`,
`add_peer`, labels released both ways); each holds a list ``scale`` of BENCH_SCALE_N
(default 1,000,000) records, one element each, half of them shared with the other node,
every record labelled. The lists are written straight into each node's store
(`fill_list`): ingest would hash a million elements into both suites' groups, minutes of
set-up that measure nothing of a session; the points are valid X25519 u-coordinates drawn
per record, the same on both nodes for a shared record. A one-record list ``warm`` is
ingested with the CLI on both nodes.

The responder, police-nl, runs as `blindmatch serve` (its own process and process pool);
it first answers one session of ``warm``, so that its imports, pool and caches are warm.
The initiator, customs-nl, runs as `blindmatch match --json` (`bench.common.run_cli`,
whose VmHWM is polled, with its pool workers'). Peak memory per element is measured on
each side beyond the process's baseline:

- initiator: the peak RSS of `match` on ``scale`` less that of the same command on
  ``warm`` (a one-element list), divided by n;
- responder: the serving process's VmHWM after the ``scale`` session less its VmHWM after
  the ``warm`` session (its list, loaded and cached for the session, is counted),
  divided by n.

Pool workers hold only the batches in flight; their peaks are reported beside. The time is
the whole `match` command's; the crypto floor is 4n X25519 multiplications with every core
busy, at the faster implementation's rate, sampled before and after the session in the
same run (`bench.common.x25519_floor`). Then the same session again with both nodes'
batches on a Dask LocalCluster of BENCH_SCALE_DASK_WORKERS (default 2) single-threaded
worker processes on this machine (``--executor dask://127.0.0.1:PORT`` on `serve` and
`match`), against the pool; 0 workers leaves that run out. BENCH_SCALE_IDLE_SECONDS sets
both nodes' ``idle_seconds`` (0, the default, leaves theirs: 30 s, enough at 10^7 a side).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    CORES,
    add_peer,
    init_node,
    print_table,
    run_cli,
    shared_runner,
    x25519_floor,
)
from loadtests.run import serve, serving_pids, stop
from node.cli.demo import blindmatch, free_port
from node.data.identifiers import CANON_VERSION
from node.data.store import Store, utc_now

__all__ = ["ScaleRun", "fill_list", "main", "scale_federation", "scale_session"]

N = int(os.environ.get("BENCH_SCALE_N", "1000000"))
DASK_WORKERS = int(os.environ.get("BENCH_SCALE_DASK_WORKERS", "2"))
IDLE_SECONDS = int(os.environ.get("BENCH_SCALE_IDLE_SECONDS", "0"))  # 0: the node's default
LIST = "scale"
WARM_LIST = "warm"
INITIATOR, RESPONDER = "customs-nl", "police-nl"
_SUITE = "x25519-blake3"
_P = 2**255 - 19
_ROWS_PER_INSERT = 50_000


def _point(i: int) -> bytes:
    """Record i's X25519 point: a u-coordinate below p (any such is a valid X25519 input)."""
    while True:
        digest = bytearray(hashlib.blake2b(i.to_bytes(8, "little"), digest_size=32).digest())
        digest[31] &= 0x7F
        if int.from_bytes(digest, "little") < _P - 1 and any(digest[1:]):
            return bytes(digest)
        i += 1 << 62  # another draw for the same record (probability 2^-250)


def fill_list(node_dir: Path, name: str, first: int, count: int) -> None:
    """Writes list `name` of records `first` .. `first + count - 1` into a node's store.

    Each record R{i} has one passport_number element and the label "case {i}"; its
    point for x25519-blake3 is `_point(i)` (ristretto255's is left as zeros: these lists
    serve x25519 sessions only).
    """
    with Store.open(node_dir) as store, store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO lists (name, kind, version, updated_at, canon_version) "
            "VALUES (?, 'watchlist', 1, ?, ?)",
            (name, utc_now(), CANON_VERSION),
        )
        list_id = int(cursor.lastrowid or 0)
        (record_id,) = conn.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()
        (element_id,) = conn.execute("SELECT coalesce(max(id), 0) FROM elements").fetchone()
        zeros = bytes(32)
        now = utc_now()
        for start in range(first, first + count, _ROWS_PER_INSERT):
            stop_at = min(start + _ROWS_PER_INSERT, first + count)
            conn.executemany(
                "INSERT INTO records (id, list_id, ref, label, stored_at) VALUES (?, ?, ?, ?, ?)",
                (
                    (record_id + i - first + 1, list_id, f"R{i}", f"case {i}", now)
                    for i in range(start, stop_at)
                ),
            )
            conn.executemany(
                "INSERT INTO elements (id, record_id, type, element, point_ristretto, "
                "point_x25519) VALUES (?, ?, 'passport_number', ?, ?, ?)",
                (
                    (
                        element_id + i - first + 1,
                        record_id + i - first + 1,
                        b"X%09d" % i,
                        zeros,
                        _point(i),
                    )
                    for i in range(start, stop_at)
                ),
            )


def scale_federation(root: Path, n: int) -> tuple[Path, Path]:
    """The CA, the initiator and the responder, each with ``scale`` (n records, half shared,
    `fill_list`) and ``warm`` (one shared record, ingested); returns their directories."""
    blindmatch("ca", "init", str(root / "ca"))
    address = {INITIATOR: f"127.0.0.1:{free_port()}", RESPONDER: f"127.0.0.1:{free_port()}"}
    first = {INITIATOR: 0, RESPONDER: n // 2}
    warm = root / "warm.csv"
    with open(warm, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["ref", "passport", "label"], ["W1", "X999999999", "warm"]])
    for agency in address:
        node = init_node(root, agency, address[agency], _SUITE)
        peer = RESPONDER if agency == INITIATOR else INITIATOR
        add_peer(node, peer, address[peer], "--release-labels")
        if IDLE_SECONDS:
            blindmatch("config", "set", str(node), "idle_seconds", str(IDLE_SECONDS))
        blindmatch("ingest", str(node), "--list", WARM_LIST, str(warm))
        fill_list(node, LIST, first[agency], n)
    return root / INITIATOR, root / RESPONDER


@dataclass(frozen=True)
class ScaleRun:
    """One `scale` session: its time and matches, and each side's peaks (KiB of VmHWM)."""

    n: int
    seconds: float
    matches: int
    initiator_kib: int
    initiator_baseline_kib: int
    initiator_workers_kib: int
    responder_kib: int
    responder_baseline_kib: int
    responder_workers_kib: int

    @property
    def initiator_per_element(self) -> float:
        """The initiator's peak beyond its baseline, in bytes per element."""
        return (self.initiator_kib - self.initiator_baseline_kib) * 1024 / self.n

    @property
    def responder_per_element(self) -> float:
        """The responder's peak beyond its baseline, in bytes per element."""
        return (self.responder_kib - self.responder_baseline_kib) * 1024 / self.n


def _children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.add(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def _hwm_kib(pid: int) -> int:
    """VmHWM of `pid` in KiB (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("VmHWM:")), 0)
    except OSError:
        return 0


@contextmanager
def _served(node_dir: Path, log_dir: Path, executor: str) -> Iterator[int]:
    """`blindmatch serve` of the responder until the block ends; yields its serving pid."""
    log_path = log_dir / f"{node_dir.name}.serve.log"
    process = serve(node_dir, 1, log_path=log_path, executor=executor)
    try:
        (pid,) = serving_pids(log_path)
        yield pid
    finally:
        stop(process)


def _match(
    node_dir: Path, list_name: str, out_dir: Path, executor: str
) -> tuple[float, int, int, int]:
    """`blindmatch match --json` of `list_name`: seconds, matches, its peak and its workers'."""
    args = [
        "match", str(node_dir), "--peer", RESPONDER, "--list", list_name, "--mode", "mutual",
        "--purpose", "scale benchmark", "--timeout", "3600", "--json", "--executor", executor,
    ]  # fmt: skip
    command = run_cli(args, out_dir, timeout=3600)
    if command.returncode != 0:
        raise SystemExit(f"blindmatch match failed ({command.returncode}): {command.stderr}")
    found = int(json.loads(command.stdout)["match_count"])
    return (
        command.seconds,
        found,
        round(command.peak_rss_mb * 1024),
        round(command.children_peak_rss_mb * 1024),
    )


def scale_session(
    root: Path, initiator: Path, responder: Path, n: int, executor: str = "local"
) -> ScaleRun:
    """Serves the responder, warms it with a ``warm`` session, then measures a ``scale`` one;
    both nodes run their batches on `executor` (``local``, or ``dask://HOST:PORT``)."""
    with _served(responder, root, executor) as pid:
        _, _, initiator_baseline, _ = _match(initiator, WARM_LIST, root, executor)
        time.sleep(0.5)  # the responder records its side after the summary it sent
        responder_baseline = _hwm_kib(pid)
        workers = _children(pid)
        seconds, found, initiator_peak, initiator_workers = _match(initiator, LIST, root, executor)
        time.sleep(0.5)
        responder_peak = _hwm_kib(pid)
        responder_workers = max((_hwm_kib(w) for w in workers), default=0)
    return ScaleRun(
        n,
        seconds,
        found,
        initiator_peak,
        initiator_baseline,
        initiator_workers,
        responder_peak,
        responder_baseline,
        responder_workers,
    )


@contextmanager
def _dask_cluster(directory: Path) -> Iterator[str]:
    """A Dask LocalCluster on loopback (DASK_WORKERS worker processes, one thread each, no
    dashboard) for the block; yields the executor that names its scheduler."""
    import dask
    from distributed import LocalCluster

    directory.mkdir()
    with (
        dask.config.set({"temporary-directory": str(directory)}),
        LocalCluster(
            n_workers=DASK_WORKERS,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            local_directory=str(directory),
        ) as cluster,
    ):
        yield "dask://" + str(cluster.scheduler_address).removeprefix("tcp://")


def _row(name: str, run: ScaleRun, floor: float, pool: ScaleRun | None) -> list[object]:
    mib = 1024
    return [
        name,
        run.seconds,
        f"{run.seconds / floor:.2f}x",
        f"{run.seconds / pool.seconds:.2f}x" if pool else "1x",
        f"{run.initiator_per_element:.0f} B "
        f"({(run.initiator_kib - run.initiator_baseline_kib) / mib:.0f} MiB over "
        f"{run.initiator_baseline_kib / mib:.0f})",
        f"{run.responder_per_element:.0f} B "
        f"({(run.responder_kib - run.responder_baseline_kib) / mib:.0f} MiB over "
        f"{run.responder_baseline_kib / mib:.0f})",
        f"{run.initiator_workers_kib / mib:.0f} / {run.responder_workers_kib / mib:.0f} MiB",
    ]


def main() -> None:
    """Runs the scale benchmark (the process pool, then a Dask LocalCluster) and prints it."""
    runner = shared_runner()
    with tempfile.TemporaryDirectory(prefix="blindmatch-bench-scale-") as tmp:
        root = Path(tmp)
        initiator, responder = scale_federation(root, N)
        before = x25519_floor(runner)
        pool = scale_session(root, initiator, responder, N)
        middle = x25519_floor(runner)
        dask, after = None, middle
        if DASK_WORKERS:
            with _dask_cluster(root / "dask") as executor:
                dask = scale_session(root, initiator, responder, N, executor)
            after = x25519_floor(runner)
    for run in (pool, dask):
        if run is not None and run.matches != N - N // 2:
            raise SystemExit(f"scale: {run.matches} matches, expected {N - N // 2}")
    pool_floor = 4 * N * before.averaged(middle).seconds
    dask_floor = 4 * N * middle.averaged(after).seconds
    dask_rows = (
        [
            _row(
                f"Dask LocalCluster, {DASK_WORKERS} worker processes x 1 thread",
                dask,
                dask_floor,
                pool,
            )
        ]
        if dask
        else []
    )
    print_table(
        f"Scale: mutual, two served nodes over mTLS, {N:,} x {N:,}, half overlap, labels "
        f"released both ways, {CORES} cores",
        [
            "run (the whole `blindmatch match`, start-up included)",
            "seconds",
            "vs crypto floor",
            "vs process pool",
            "initiator peak / element",
            "responder peak / element",
            "pool worker peak (I / R)",
        ],
        [
            _row("process pool (the default)", pool, pool_floor, None),
            *dask_rows,
            [
                f"crypto floor: 4n X25519 on {CORES} busy cores ({before.implementation})",
                pool_floor,
                "1x",
                "",
                "",
                "",
                "",
            ],
        ],
    )
    print(
        f"{pool.matches:,} matches each. Peaks are VmHWM beyond each process's baseline: the "
        "initiator's `match` against the same command on a one-element list; the "
        "responder's `serve` after the session against after a one-element session (with "
        "Dask, the cluster's workers are not the node's processes: not counted). Floor: "
        f"{before.describe()}, averaged with the samples after each run.",
        flush=True,
    )


if __name__ == "__main__":
    main()
