"""Recording hits as records: what one large session's hits cost the store.

BENCH_HITS (default 300,000) hits of one session go through `Store.add_hits` in
one transaction, as `SessionRecord.complete` writes them, into a throwaway store:
first all new (inserted), then all seen again by a second session (updated,
status kept); then listing the new ones and counting them (`hits --new`, `status`).
The hits come in a shuffled order, as a session's matches do.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

from bench.common import print_table, stopwatch
from node.data.store import Store

__all__ = ["main"]

HITS = int(os.environ.get("BENCH_HITS", "300000"))
_TYPES = ("passport", "passport_number", "person", "person_year", "phone", "iban")


def _hits(count: int) -> list[dict[str, str | None]]:
    rng = random.Random(7)
    hits: list[dict[str, str | None]] = [
        {
            "ref": f"REF-{i // 2:08d}",
            "type": _TYPES[i % len(_TYPES)],
            "peer_label": f"case {i // 2} contact desk" if i % 3 else None,
        }
        for i in range(count)
    ]
    rng.shuffle(hits)
    return hits


def main() -> None:
    """Runs the hits benchmark and prints its table."""
    hits = _hits(HITS)
    rows: list[list[object]] = []
    with (
        tempfile.TemporaryDirectory(prefix="blindmatch-bench-hits-") as tmp,
        Store.open(Path(tmp), create=True) as store,
    ):
        for session, what in (("a" * 32, "first session: all new"), ("b" * 32, "seen again")):
            with stopwatch() as watch, store.transaction():
                new = store.add_hits(session, "police-nl", "initiator", "bench", "mutual", hits)
            rows.append([what, len(hits), len(new), watch.seconds, len(hits) / watch.seconds])
        with stopwatch() as watch:
            listed = store.hits(new_only=True)
        rows.append(["list new hits", len(listed), "", watch.seconds, len(listed) / watch.seconds])
        with stopwatch() as watch:
            count = store.new_hit_count()
        rows.append(["count new hits", count, "", watch.seconds, count / watch.seconds])
    print_table(
        f"Hit records in the store, {HITS:,} hits of one session",
        ["step", "hits", "new", "seconds", "hits/s"],
        rows,
    )


if __name__ == "__main__":
    main()
