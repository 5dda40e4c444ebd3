"""The notification job's parts: the body, its signature and headers, the retry schedule;
and the job itself, in-process against real HTTP receivers: a slow webhook does not hold
up another, and a delivered row is settled once."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import random
import subprocess
import time
from pathlib import Path

from crypto.batch import BatchRunner
from node.jobs.notify import (
    RETRY_CAP_SECONDS,
    deliver_notifications,
    delivery_body,
    delivery_headers,
    retry_delay,
    signature,
)
from node.sessions.records import SessionRecord
from node.setup.config import Webhook, write_config
from node.setup.context import NodeContext
from tests.conftest import MakeNode, RunCli
from tests.webhook_receiver import Receiver

HIT = {
    "id": 17,
    "peer": "police-nl",
    "list": "seizures",
    "ref": "C1",
    "type": "iban",
    "peer_label": "police op TULIP",
    "role": "initiator",
    "mode": "mutual",
    "status": "new",
    "first_seen": "2026-11-02T08:00:00+00:00",
    "last_seen": "2026-11-02T09:00:00+00:00",
}


def test_body_has_the_hit_and_what_to_do() -> None:
    body = json.loads(delivery_body(HIT, "customs-nl", Path("/srv/customs")))
    assert body == {
        "hit_id": 17,
        "node": "customs-nl",
        "list": "seizures",
        "ref": "C1",
        "type": "iban",
        "peer": "police-nl",
        "peer_label": "police op TULIP",
        "role": "initiator",
        "mode": "mutual",
        "status": "new",
        "first_seen": "2026-11-02T08:00:00+00:00",
        "last_seen": "2026-11-02T09:00:00+00:00",
        "next_step": "contact police-nl through the usual channel quoting their reference "
        "'police op TULIP'; acknowledge with blindmatch hits ack /srv/customs 17 --by NAME",
    }
    unlabelled = json.loads(delivery_body({**HIT, "peer_label": None}, "customs-nl", "/n"))
    assert unlabelled["peer_label"] is None
    assert "released no reference" in unlabelled["next_step"]


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = delivery_body(HIT, "customs-nl", "/n")
    expected = hmac.new(b"k3y", body, hashlib.sha256).hexdigest()
    assert signature("k3y", body) == f"sha256={expected}"
    # The documented shell check gives the same digest.
    openssl = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", "k3y", "-r"],
        input=body,
        capture_output=True,
        check=True,
    )
    assert openssl.stdout.split()[0].decode() == expected
    headers = delivery_headers(body, "k3y", 17)
    assert headers == {
        "Content-Type": "application/json",
        "X-Blindmatch-Signature": f"sha256={expected}",
        "X-Blindmatch-Delivery": "17",
    }


def test_retry_schedule_doubles_to_the_cap_with_jitter() -> None:
    rng = random.Random(7)
    for failures, nominal in [(1, 2), (2, 4), (3, 8), (9, 512), (10, 600), (500, 600)]:
        for _ in range(50):
            delay = retry_delay(failures, 2, rng=rng)
            assert 0.75 * nominal <= delay <= nominal
    assert retry_delay(10_000, 2, rng=rng) <= RETRY_CAP_SECONDS
    delays = {round(retry_delay(3, 2, rng=rng), 6) for _ in range(20)}
    assert len(delays) > 10  # rows failed together spread out


def test_a_slow_webhook_does_not_hold_up_another(
    make_node: MakeNode, run_cli: RunCli, tmp_path: Path
) -> None:
    config = make_node()
    (tmp_path / "w.csv").write_text("ref,email\nW1,a@example.org\nW2,b@example.org\n")
    run_cli("ingest", config.node_dir, "--list", "watch", tmp_path / "w.csv", check=True)
    secrets = {"/slow": "slow-secret", "/fast": "fast-secret"}
    with Receiver(secrets, delay=lambda path: 1.5 if path == "/slow" else 0.0) as receiver:
        hooks = tuple(Webhook(receiver.url(p), s) for p, s in secrets.items())
        write_config(dataclasses.replace(config, webhooks=hooks))
        node = NodeContext.load(config.node_dir, BatchRunner())
        hits = [{"ref": r, "type": "email", "peer_label": None} for r in ("W1", "W2")]
        record = SessionRecord(
            node, "a" * 32, "police-nl", "responder", "mutual", "x25519-blake3", "watch",
            "targets", "test", "pytest",
        )  # fmt: skip
        record.start(2)
        record.complete(2, 2, hits)

        def delivered() -> int:
            with node.open_store() as store:
                query = "SELECT count(*) FROM outbox WHERE delivered_at IS NOT NULL"
                return int(store.conn.execute(query).fetchone()[0])

        async def deliver() -> float:
            job = asyncio.create_task(deliver_notifications(node, poll=0.05))
            start = time.monotonic()
            try:
                while await asyncio.to_thread(delivered) < 4:  # answered, and recorded
                    assert time.monotonic() - start < 20, receiver.all()
                    await asyncio.sleep(0.02)
            finally:
                job.cancel()
                await asyncio.gather(job, return_exceptions=True)
            return start

        asyncio.run(deliver())
    fast, slow = receiver.accepted("/fast"), receiver.accepted("/slow")
    assert sorted(r.delivery for r in fast) == sorted(r.delivery for r in slow)
    assert len(receiver.all()) == 4 and all(r.signed for r in receiver.all())
    assert max(r.at for r in fast) < min(r.at for r in slow) - 1.0
    rows = node.store().conn.execute("SELECT attempts, delivered_at FROM outbox").fetchall()
    assert len(rows) == 4 and all(a == 1 and d for a, d in rows)
