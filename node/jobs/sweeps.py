"""Deconfliction sweeps: mutual sessions of operations lists with every peer allowed to match them.

A sweep is a set of (list, peer) pairs, each one mutual session run by
`node.rpc.client.match` — recorded (`SessionRecord`), audited and stored as
hits exactly like a session of `blindmatch match` — at most `SWEEP_CONCURRENCY`
at once, each with a deadline (`SESSION_SECONDS`) and the node's idle timeout.
A pair that fails (a peer down, stalled or refusing) is one failed result and
never stops or delays the others. Two callers:

- `sweep` — `blindmatch sweep` (and anything else that wants one sweep now):
  plans the pairs (`plan_blocking`), runs them, returns one `SweepResult` per pair.
- `sweep_on_change_and_schedule` — a `serve` job: it sweeps an operations list
  with every allowed peer within `sweep_poll_seconds` of a change of its
  version (an ingest, a record removal, a retention purge — which is also how a
  record whose validity window closes is seen: retention erases it then) or of
  the moment a record's validity window opens (which changes no version);
  every pair that no session has swept for `sweep_minutes` (node.toml; 0 turns
  the schedule off); and retries a failed pair after `RETRY_FIRST_SECONDS`,
  doubling up to `sweep_minutes` (an hour when the schedule is off), until it
  succeeds or is no longer eligible. Starting `serve` sees no change: the
  first look sets the baseline of list versions and window openings. The
  schedule is read from the store's session records (the last non-failed
  mutual session we started of the list with the peer's list of the same name,
  whoever started it: serve, `blindmatch sweep` or `match`), so it survives
  restarts: a pair last swept more than `sweep_minutes` ago is swept at the
  first poll, one never swept `sweep_minutes` after the start. With `serve --workers N` only
  the process holding the `sweep.lock` flock in the node directory sweeps; the
  others try again every poll, so one takes over if the holder dies.

A pair is eligible when the list is an `operations` list and the peer's policy
in node.toml allows that list (`lists`) and the `mutual` mode; the peer's list
has the same name as ours. Sessions run by `serve` have the purpose
`deconfliction sweep` and the operator `node`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from crypto.errors import CryptoError
from node.data.store import stored_time
from node.errors import ConfigError, NodeError, NotFound, PolicyDenied
from node.rpc.client import match
from node.sessions.records import describe
from node.sessions.results import Progress
from node.setup.config import NodeConfig
from node.setup.context import NodeContext

__all__ = [
    "LOCK_FILE",
    "OPERATOR",
    "PURPOSE",
    "RETRY_FIRST_SECONDS",
    "SESSION_SECONDS",
    "SWEEP_CONCURRENCY",
    "Pair",
    "SweepResult",
    "eligible_pairs",
    "plan_blocking",
    "sweep",
    "sweep_on_change_and_schedule",
    "sweep_pair",
]

SWEEP_CONCURRENCY = 4
"""Sessions of one sweep (or of serve's sweeps together) running at once."""
SESSION_SECONDS = 600.0
"""Deadline of each session of a sweep; a stalled peer is abandoned sooner, after idle_seconds."""
RETRY_FIRST_SECONDS = 30.0
"""serve retries a failed pair after this long, then doubling up to sweep_minutes."""
RETRY_CAP_OFF_SECONDS = 3600.0
"""Longest wait between retries when the schedule is off (sweep_minutes = 0)."""
PURPOSE = "deconfliction sweep"
OPERATOR = "node"
LOCK_FILE = "sweep.lock"
MODE = "mutual"

log = logging.getLogger("blindmatch.sweeps")


@dataclass(frozen=True, order=True)
class Pair:
    """One session of a sweep: our `list` with `peer`'s list of the same name."""

    list: str
    peer: str

    def __str__(self) -> str:
        return f"{self.list} with {self.peer}"


@dataclass(frozen=True)
class SweepResult:
    """The outcome of one pair: the session and its match count, or why it failed."""

    list: str
    peer: str
    session_id: str | None = None
    match_count: int | None = None
    error: str | None = None
    seconds: float = 0.0
    """How long the pair took, from the start of its session (not printed by --json)."""

    @property
    def ok(self) -> bool:
        """Whether the session completed."""
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """As `sweep --json` prints it: list, peer, session_id, match_count, error."""
        return {
            "list": self.list,
            "peer": self.peer,
            "session_id": self.session_id,
            "match_count": self.match_count,
            "error": self.error,
        }

    def line(self) -> str:
        """One line for the operator and the log."""
        if self.error is not None:
            return f"{self.list} with {self.peer}: failed: {self.error}"
        shared = f"{self.match_count:,} shared"
        return f"{self.list} with {self.peer}: {shared} (session {self.session_id})"


def eligible_pairs(config: NodeConfig, lists: Iterable[str]) -> list[Pair]:
    """The pairs of `lists` (operations lists) with every peer whose policy allows them, sorted."""
    return sorted(
        Pair(name, peer)
        for name in lists
        for peer, policy in config.peers.items()
        if policy.allows_mode(MODE) and policy.allows_list(name)
    )


def _operations_versions_blocking(node: NodeContext) -> dict[str, int]:
    """Every operations list of the node with its version (blocking: SQLite)."""
    listed = node.store().list_versions().items()
    return {name: version for name, (kind, version) in listed if kind == "operations"}


def plan_blocking(
    node: NodeContext, lists: Sequence[str] | None = None, peers: Sequence[str] | None = None
) -> list[Pair]:
    """The pairs of a sweep (blocking: SQLite), or an error saying why there is nothing to sweep.

    `lists` default to every operations list, `peers` to every configured peer;
    a list or peer named here must exist, a list must be an operations list and
    a peer's policy must allow mutual sessions. Pairs the policy does not allow
    are left out; when none is left the error names what to change.
    """
    config = node.config
    where = config.node_dir
    stored = {name: kind for name, (kind, _) in node.store().list_versions().items()}
    if lists:
        for name in lists:
            kind = stored.get(name)
            if kind is None:
                known = ", ".join(sorted(stored)) or "none yet"
                raise NotFound(
                    f"no list {name!r} in {where} (lists: {known}); load it with "
                    f"'blindmatch ingest {where} --list {name} --kind operations FILE'"
                )
            if kind != "operations":
                raise ConfigError(
                    f"list {name!r} is a {kind} list: sweeps run operations lists only; "
                    f"check it against one peer with 'blindmatch match {where} --peer ID "
                    f"--list {name} --purpose TEXT'"
                )
        names = list(dict.fromkeys(lists))
    else:
        names = sorted(n for n, kind in stored.items() if kind == "operations")
        if not names:
            raise NotFound(
                f"nothing to sweep: {where} has no operations list; load one with "
                f"'blindmatch ingest {where} --list NAME --kind operations FILE'"
            )
    if peers:
        for peer in peers:
            policy = config.peer(peer)  # ConfigError saying how to add it
            if not policy.allows_mode(MODE):
                raise PolicyDenied(
                    f"peer {peer}'s policy in {config.config_path} does not allow mutual "
                    f"sessions (modes: {', '.join(sorted(policy.modes)) or 'none'}); allow them "
                    f"with 'blindmatch peer set {where} --agency {peer} --modes mutual,...'"
                )
        wanted = set(peers)
    else:
        wanted = set(config.peers)
        if not wanted:
            raise NotFound(
                f"nothing to sweep: {config.config_path} has no peer; add one with "
                f"'blindmatch peer add {where} --agency ID --address HOST:PORT'"
            )
    pairs = [p for p in eligible_pairs(config, names) if p.peer in wanted]
    if not pairs:
        raise PolicyDenied(
            f"nothing to sweep: the policy of {', '.join(sorted(wanted))} in "
            f"{config.config_path} allows mutual sessions of none of {', '.join(names)}; "
            f"allow a list with 'blindmatch peer set {where} --agency ID --lists NAME,...'"
        )
    return pairs


async def sweep_pair(
    node: NodeContext,
    pair: Pair,
    purpose: str,
    operator: str,
    timeout: float = SESSION_SECONDS,
    progress: Progress | None = None,
) -> SweepResult:
    """Runs one mutual session of a sweep; a failure is returned, never raised (but Ctrl-C)."""
    start = time.monotonic()
    try:
        result = await match(
            node,
            peer=pair.peer,
            list_name=pair.list,
            peer_list=pair.list,
            mode=MODE,
            purpose=purpose,
            operator=operator,
            timeout=timeout,
            progress=progress,
        )
    except (NodeError, CryptoError) as exc:
        return SweepResult(pair.list, pair.peer, error=describe(exc), seconds=_since(start))
    except Exception as exc:  # a bug must not end the other pairs: logged, reported failed
        log.exception("sweep: %s failed unexpectedly", pair)
        return SweepResult(pair.list, pair.peer, error=describe(exc), seconds=_since(start))
    return SweepResult(
        pair.list,
        pair.peer,
        session_id=result.session_id,
        match_count=result.match_count,
        seconds=_since(start),
    )


def _since(start: float) -> float:
    return round(time.monotonic() - start, 3)


async def sweep(
    node: NodeContext,
    lists: Sequence[str] | None = None,
    peers: Sequence[str] | None = None,
    *,
    purpose: str,
    operator: str,
    limit: int = SWEEP_CONCURRENCY,
    timeout: float = SESSION_SECONDS,
    progress: Callable[[Pair], Progress | None] | None = None,
    on_result: Callable[[SweepResult], None] | None = None,
) -> list[SweepResult]:
    """Sweeps `lists` with `peers` (see `plan_blocking`), `limit` sessions at once.

    Returns one result per pair, in plan order; `on_result` is told each as it
    arrives. Raises only what `plan_blocking` raises, or the cancellation
    (Ctrl-C): sessions running then are recorded failed (`interrupted`).
    """
    pairs = await asyncio.to_thread(plan_blocking, node, lists, peers)
    slots = asyncio.Semaphore(max(1, limit))

    async def one(pair: Pair) -> SweepResult:
        async with slots:
            result = await sweep_pair(
                node, pair, purpose, operator, timeout, progress(pair) if progress else None
            )
        if on_result is not None:
            on_result(result)
        return result

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(one(pair), name=f"sweep {pair}") for pair in pairs]
    return [task.result() for task in tasks]


# -- the serve job ------------------------------------------------------------------------------


async def sweep_on_change_and_schedule(
    node: NodeContext, retry_first: float = RETRY_FIRST_SECONDS
) -> None:
    """Sweeps operations lists when they change and every sweep_minutes; runs until cancelled."""
    fd = await _take_lock(node)
    try:
        await _Sweeper(node, retry_first=retry_first).run()
    finally:
        os.close(fd)


def _try_lock_blocking(path: os.PathLike[str]) -> int | None:
    """An fd holding the exclusive flock on `path`, or None if another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


async def _take_lock(node: NodeContext) -> int:
    """Waits (polling, never blocking the loop) until this process holds the sweep lock."""
    path = node.config.node_dir / LOCK_FILE
    told = False
    while True:
        try:
            fd = await asyncio.to_thread(_try_lock_blocking, path)
        except OSError as exc:
            log.error("sweeps: cannot open %s (%s); no sweeps until it can be opened", path, exc)
            fd = None
        if fd is not None:
            log.info(
                "sweeps: this process sweeps (every %s; a changed operations list within %d s)",
                f"{node.config.sweep_minutes} min" if node.config.sweep_minutes else "off",
                node.config.sweep_poll_seconds,
            )
            return fd
        if not told:
            log.info("sweeps: another serving process of this node sweeps; this one stands by")
            told = True
        await asyncio.sleep(node.config.sweep_poll_seconds)


class _Sweeper:
    """serve's sweeps: which pairs are due, the tasks running them, retries with backoff."""

    def __init__(
        self,
        node: NodeContext,
        limit: int = SWEEP_CONCURRENCY,
        retry_first: float = RETRY_FIRST_SECONDS,
    ) -> None:
        self.node = node
        self.retry_first = retry_first
        self.loop = asyncio.get_running_loop()
        self.slots = asyncio.Semaphore(limit)
        self.versions: dict[str, int] | None = None  # None until the baseline is read
        self.opens: dict[str, str] = {}  # per operations list: when a record's window next opens
        self.started = self.loop.time()
        self.swept_before: dict[Pair, bool] = {}  # whether the store holds a sweep of the pair
        self.due: set[Pair] = set()
        self.running: dict[Pair, asyncio.Task[None]] = {}
        self.failures: dict[Pair, int] = {}
        self.retry_at: dict[Pair, float] = {}

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.tick()
                except Exception:  # a bug must not end serve's sweeps for good
                    log.exception("sweeps: a look at the lists failed; tried again next poll")
                await asyncio.sleep(self.node.config.sweep_poll_seconds)
        finally:
            tasks = list(self.running.values())
            for task in tasks:
                task.cancel()  # each session is recorded failed (interrupted)
            await asyncio.gather(*tasks, return_exceptions=True)

    async def tick(self) -> None:
        """Looks at versions, window openings, the schedule and retries; starts what is due."""
        try:
            versions = await asyncio.to_thread(_operations_versions_blocking, self.node)
        except NodeError as exc:
            log.error("sweeps: cannot read the lists, tried again in a moment: %s", exc)
            return
        config = self.node.config  # reloaded by config_watch
        now = self.loop.time()
        wall = self.node.now()
        pairs = eligible_pairs(config, versions)
        eligible = set(pairs)
        for table in (self.failures, self.retry_at, self.swept_before):
            for pair in [p for p in table if p not in eligible]:
                del table[pair]
        self.due &= eligible
        baseline = self.versions is None
        if self.versions is None:  # the baseline: starting does not sweep
            self.versions = versions
            log.info(
                "sweeps: %d operations list(s) as of now; a change of one is swept with %d "
                "allowed peer session(s) in all",
                len(versions),
                len(pairs),
            )
        changed = sorted(n for n, v in versions.items() if self.versions.get(n) != v)
        self.versions = versions
        now_stored = stored_time(wall)
        opened = sorted(n for n, at in self.opens.items() if at <= now_stored and n in versions)
        for name in changed:
            self._sweep_list(name, pairs, f"changed (version {versions[name]})")
        for name in opened:
            if name not in changed:
                self._sweep_list(name, pairs, "has a record whose validity window opened")
        stale = set(versions) if baseline else {*changed, *opened}
        if stale:  # when a record's window opens next: read again when its list changed
            opens = await asyncio.to_thread(self._opens_blocking, stored_time(wall), stale)
            self.opens = {n: at for n, at in self.opens.items() if n not in stale} | opens
        self.opens = {n: at for n, at in self.opens.items() if n in versions}
        minutes = config.sweep_minutes
        if minutes:
            scheduled = await self._scheduled(pairs, now, wall, minutes)
            if scheduled:
                log.info(
                    "sweeps: scheduled sweep (every %d min): %s not swept since %s",
                    minutes,
                    ", ".join(map(str, scheduled)),
                    stored_time(wall - dt.timedelta(minutes=minutes)),
                )
                self.due.update(scheduled)
        self.due.update(p for p, at in self.retry_at.items() if at <= now)
        for pair in sorted(self.due):
            if pair not in self.running:  # else it runs again once the running one ends
                self.due.discard(pair)
                self.retry_at.pop(pair, None)
                task = asyncio.create_task(self.run_pair(pair), name=f"sweep {pair}")
                self.running[pair] = task
                task.add_done_callback(self._ended)

    def _sweep_list(self, name: str, pairs: list[Pair], why: str) -> None:
        peers = [p.peer for p in pairs if p.list == name]
        log.info(
            "sweeps: operations list %s %s: sweeping it with %s",
            name,
            why,
            ", ".join(peers) or "no peer (no policy allows it)",
        )
        self.due.update(p for p in pairs if p.list == name)

    def _opens_blocking(self, now: str, names: set[str]) -> dict[str, str]:
        return self.node.store().window_edges(now, names, closing=False)

    async def _scheduled(
        self, pairs: list[Pair], now: float, wall: dt.datetime, minutes: int
    ) -> list[Pair]:
        """The pairs no session has swept for `minutes` (never swept: `minutes` after the start).

        A pair running, already due or failing (its retries take it) is not looked at.
        """
        waiting = [
            p
            for p in pairs
            if p not in self.running and p not in self.due and p not in self.failures
        ]
        if not waiting:
            return []
        since = stored_time(wall - dt.timedelta(minutes=minutes))
        unknown = {p for p in waiting if p not in self.swept_before}
        try:
            recent, before = await asyncio.to_thread(self._sweeps_blocking, waiting, unknown, since)
        except NodeError as exc:
            log.error("sweeps: cannot read the last sweeps, tried again in a moment: %s", exc)
            return []
        self.swept_before.update(before)
        long_up = now - self.started >= minutes * 60
        return [p for p in waiting if p not in recent and (long_up or self.swept_before[p])]

    def _sweeps_blocking(
        self, pairs: list[Pair], unknown: set[Pair], since: str
    ) -> tuple[set[Pair], dict[Pair, bool]]:
        """The pairs swept at or after `since`, and whether each `unknown` pair was ever swept
        (blocking: SQLite; one indexed read per peer, and one more per peer with unknowns)."""
        store = self.node.store()
        recent: set[Pair] = set()
        before: dict[Pair, bool] = {}
        for peer in sorted({p.peer for p in pairs}):
            lists = store.last_initiated(peer, MODE, since)
            recent.update(p for p in pairs if p.peer == peer and p.list in lists)
            if any(p.peer == peer for p in unknown):
                ever = store.last_initiated(peer, MODE)
                before.update((p, p.list in ever) for p in unknown if p.peer == peer)
        return recent, before

    def _ended(self, task: asyncio.Task[None]) -> None:
        for pair, running in list(self.running.items()):
            if running is task:
                del self.running[pair]

    async def run_pair(self, pair: Pair) -> None:
        """One session, logged; a failure schedules the pair's next retry."""
        async with self.slots:
            result = await sweep_pair(self.node, pair, PURPOSE, OPERATOR)
        if result.ok:
            self.failures.pop(pair, None)
            self.swept_before[pair] = True
            log.info("sweep: %s", result.line())
            return
        failures = self.failures[pair] = self.failures.get(pair, 0) + 1
        minutes = self.node.config.sweep_minutes
        cap = minutes * 60.0 if minutes else RETRY_CAP_OFF_SECONDS
        delay = min(self.retry_first * 2 ** min(failures - 1, 30), cap)
        self.retry_at[pair] = self.loop.time() + delay
        log.warning(
            "sweep: %s (failure %d in a row; retried in %.0f s)", result.line(), failures, delay
        )
