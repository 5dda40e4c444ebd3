"""Screening (`match --mode screen`): end to end over real `blindmatch serve` processes and mTLS,
and in-process for budgets, staleness and tampering."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import multiprocessing
import sqlite3
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from crypto import oprf, screening
from crypto.batch import BatchRunner
from node.data import audit
from node.data.ingest import ingest_file
from node.errors import LimitExceeded, PeerError, PolicyDenied
from node.policy import PROTOCOL_VERSION
from node.sessions.answering import Answering
from node.sessions.screen_initiator import LocalTransport, run_screen
from node.sessions.screen_responder import build_encoded_list, current_epoch, rotate_epoch
from node.setup.config import NodeConfig, PeerPolicy, write_config
from node.setup.context import NodeContext
from tests.conftest import MakeNode
from tests.federation import Federation, peer_channel

RESPONDER_LIST = """ref,passport,email,label
P-1,NLD:AB1234567,a@example.org,Case 1: contact police ops
P-2,NLD:CD7654321,,
P-3,,shared@example.org,Case 3
P-4,BEL:ZZ0000001,b@example.org,Case 4
P-5,NLD:AB1234567,,Case 5 (same passport as P-1)
"""
INITIATOR_LIST = """ref,passport,email,label
C-1,NLD:AB1234567,nobody@example.org,customs seizure 1
C-2,NLD:CD7654321,shared@example.org,
C-3,FRA:XX9999999,c@example.org,
C-4,,b@example.org,customs seizure 4
"""


def _federation(root: Path) -> Federation:
    """customs-nl and police-nl, each allowing the other every mode, with their lists."""
    fed = Federation(root)
    for agency in ("customs-nl", "police-nl"):
        fed.add_node(agency)
    for agency, peer in (("customs-nl", "police-nl"), ("police-nl", "customs-nl")):
        fed.add_peer(agency, peer, "--modes", "mutual,count,screen", "--release-labels")
    fed.ingest("police-nl", "wl", RESPONDER_LIST)
    fed.ingest("customs-nl", "manifest", INITIATOR_LIST)
    return fed


def _match(fed: Federation, mode: str) -> dict[str, Any]:
    result: dict[str, Any] = fed.match(
        "customs-nl", "police-nl", "manifest", "wl", mode=mode, purpose="manifest screening test"
    )
    return result


def _audit_events(node_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    conn = sqlite3.connect(node_dir / "store.sqlite")
    try:
        return [(e, json.loads(b)) for e, b in conn.execute("SELECT event, body FROM audit")]
    finally:
        conn.close()


def _key(match: dict[str, Any]) -> tuple[str, str, str | None]:
    return (match["ref"], match["type"], match["peer_label"])


def test_screen_finds_what_mutual_finds_and_refetches_after_rotation(tmp_path: Path) -> None:
    fed = _federation(tmp_path)
    try:
        fed.start("police-nl")
        mutual = _match(fed, "mutual")
        police_hits_after_mutual = fed.hits("police-nl")
        screen = _match(fed, "screen")
        assert screen["mode"] == "screen" and screen["suite"] == "ristretto255-sha512"
        assert sorted(map(_key, screen["matches"])) == sorted(map(_key, mutual["matches"]))
        assert screen["match_count"] == mutual["match_count"] == 6
        assert screen["local_count"] == mutual["local_count"]
        assert screen["peer_count"] == 11  # encoded entries: one per stored element
        assert any(m["peer_label"] == "Case 1: contact police ops; Case 5 (same passport as P-1)"
                   for m in screen["matches"])  # fmt: skip
        # The responder records no hits for screening, the initiator records them: the same
        # hits as the mutual session's, seen again by a second session, now in screen mode.
        assert fed.hits("police-nl") == police_hits_after_mutual
        mine = fed.hits("customs-nl")
        assert sorted({_key(h) for h in mine}) == sorted({_key(m) for m in screen["matches"]})
        assert all((h["sessions"], h["mode"], h["role"]) == (2, "screen", "initiator")
                   for h in mine)  # fmt: skip

        def fetched() -> list[int]:
            return [b["epoch"] for e, b in _audit_events(tmp_path / "police-nl")
                    if e == "screen.fetched"]  # fmt: skip

        first = fetched()
        assert len(first) == 1
        _match(fed, "screen")  # cached: no second fetch
        assert fetched() == first
        fed.cli("epoch", "rotate", tmp_path / "police-nl", "--list", "wl")
        again = _match(fed, "screen")
        assert sorted(map(_key, again["matches"])) == sorted(map(_key, mutual["matches"]))
        assert len(fetched()) == 2 and fetched()[1] > first[0]
        queries = [b for e, b in _audit_events(tmp_path / "customs-nl") if e == "screen.query"]
        assert [q["fetches"] for q in queries] == [1, 0, 1]
        assert queries[-1]["epoch"] == fetched()[1]
        conn = sqlite3.connect(tmp_path / "customs-nl" / "store.sqlite")
        assert conn.execute("SELECT epoch FROM screen_cache").fetchall() == [(fetched()[1],)]
        conn.close()
        answered = [b for e, b in _audit_events(tmp_path / "police-nl") if e == "screen.answered"]
        assert len(answered) == 3 and all(a["batch_size"] == 10 for a in answered)
        assert all("element" not in json.dumps(a) for a in answered)
    finally:
        fed.close()
    for agency in ("police-nl", "customs-nl"):
        fed.cli("audit", "verify", tmp_path / agency)


def test_hostile_screen_requests_are_refused_and_change_nothing(tmp_path: Path) -> None:
    """Malformed, oversized and stale Screen calls over real mTLS: a clear status each, no
    budget charged, and the node keeps answering."""
    import grpc

    from node.generated.blindmatch.v1 import matching_pb2 as pb
    from node.generated.blindmatch.v1 import matching_pb2_grpc as pb_grpc

    fed = _federation(tmp_path)
    try:
        fed.start("police-nl")
        customs = fed.node("customs-nl")
        with peer_channel(customs, "police-nl", fed.addresses["police-nl"]) as channel:
            stub = pb_grpc.MatchingStub(channel)

            def fetch(list_name: str) -> pb.EncodedListChunk:
                request = pb.FetchEncodedListRequest(
                    protocol_version=PROTOCOL_VERSION, list=list_name, purpose="hostile test"
                )
                return next(iter(stub.FetchEncodedList(request, timeout=30)))

            with pytest.raises(grpc.RpcError) as caught:
                fetch("nope")
            assert caught.value.code() is grpc.StatusCode.NOT_FOUND
            assert "'nope'" in (caught.value.details() or "")
            header = fetch("wl")

            def screen(blinded: bytes, **fields: object) -> grpc.RpcError:
                values: dict[str, object] = dict(
                    protocol_version=PROTOCOL_VERSION, session_id="ab" * 16, list="wl",
                    epoch=header.epoch, list_version=header.list_version, purpose="hostile test",
                    blinded=blinded,
                )  # fmt: skip
                values.update(fields)
                with pytest.raises(grpc.RpcError) as caught:
                    stub.Screen(pb.ScreenRequest(**values), timeout=30)  # type: ignore[arg-type]
                return caught.value

            cases = [
                (screen(b"\x01" * 33), grpc.StatusCode.INVALID_ARGUMENT, "32-byte elements"),
                (screen(b""), grpc.StatusCode.INVALID_ARGUMENT, "1 to 4,096"),
                (screen(bytes(32 * 4097)), grpc.StatusCode.INVALID_ARGUMENT, "1 to 4,096"),
                (screen(b"\xff" * 64), grpc.StatusCode.INVALID_ARGUMENT, "blinded element 0"),
                (screen(bytes(32)), grpc.StatusCode.INVALID_ARGUMENT, "the identity element"),
                (screen(bytes(64), epoch=header.epoch + 1), grpc.StatusCode.FAILED_PRECONDITION,
                 "fetch the encoded list again"),
                (screen(bytes(64), protocol_version=9), grpc.StatusCode.FAILED_PRECONDITION,
                 "protocol version 9"),
                (screen(bytes(64), purpose=""), grpc.StatusCode.INVALID_ARGUMENT, "purpose"),
            ]  # fmt: skip
            for error, code, reason in cases:
                assert error.code() is code, (error.code(), error.details())
                assert reason in (error.details() or ""), error.details()
        conn = sqlite3.connect(tmp_path / "police-nl" / "store.sqlite")
        assert conn.execute("SELECT count(*) FROM screen_usage").fetchone() == (0,)
        conn.close()
        refused = [b for e, b in _audit_events(tmp_path / "police-nl") if e == "screen.refused"]
        assert len(refused) == len(cases) + 1  # and the unknown list's fetch
        screen_result = _match(fed, "screen")  # the node keeps serving
        assert screen_result["match_count"] == 6
    finally:
        fed.close()


# -- in-process: a responder and an initiator context over LocalTransport --------------------


@pytest.fixture
def pair(make_node: MakeNode, tmp_path: Path) -> tuple[NodeContext, NodeContext]:
    police = make_node("police-nl", "127.0.0.1:50052")
    customs = make_node("customs-nl", "127.0.0.1:50051")
    police = dataclasses.replace(
        police,
        peers=MappingProxyType(
            {
                "customs-nl": PeerPolicy(
                    "customs-nl",
                    "127.0.0.1:50051",
                    modes=frozenset({"screen"}),
                    screen_budget_per_day=10,
                )
            }
        ),  # fmt: skip
    )
    write_config(police)
    customs = dataclasses.replace(
        customs,
        peers=MappingProxyType({"police-nl": PeerPolicy("police-nl", "127.0.0.1:50052")}),
    )
    write_config(customs)
    (tmp_path / "r.csv").write_text(RESPONDER_LIST)
    (tmp_path / "i.csv").write_text(INITIATOR_LIST)
    contexts = []
    for config, name, path in ((police, "wl", "r.csv"), (customs, "manifest", "i.csv")):
        node = NodeContext.load(config.node_dir, BatchRunner())
        with node.open_store() as store:
            ingest_file(store, tmp_path / path, name, config.canon_context(),
                        node.audit_key, executor=None)  # fmt: skip
        contexts.append(node)
    return contexts[0], contexts[1]


def _screen(police: NodeContext, customs: NodeContext, transport: Any = None) -> Any:
    transport = transport or LocalTransport(Answering.of(police), "customs-nl")
    return asyncio.run(run_screen(customs, transport, "police-nl", "manifest", "wl", "test", "op"))


def test_budget_exhausted_is_refused_with_reset_time(pair: Any) -> None:
    police, customs = pair
    result = _screen(police, customs)  # 10 items of a budget of 10
    assert result.match_count == 6
    with pytest.raises(LimitExceeded, match=r"resets at \d{4}-\d\d-\d\dT00:00:00Z"):
        _screen(police, customs)
    refused = [b for e, b in _audit_events(police.config.node_dir) if e == "screen.refused"]
    assert "screening budget" in refused[-1]["reason"] and "resets at" in refused[-1]["reason"]


def test_labels_withheld_by_policy(pair: Any) -> None:
    police, customs = pair
    result = _screen(police, customs)
    assert result.match_count == 6 and all(m["peer_label"] is None for m in result.matches)


def test_mode_not_allowed_is_denied(pair: Any) -> None:
    police, customs = pair
    policy = dataclasses.replace(police.config.peers["customs-nl"], modes=frozenset({"mutual"}))
    police.config = dataclasses.replace(
        police.config, peers=MappingProxyType({"customs-nl": policy})
    )
    with pytest.raises(PolicyDenied, match="'screen'"):
        _screen(police, customs)


def test_list_change_and_rotation_refetch_and_incremental_build(pair: Any, tmp_path: Path) -> None:
    police, customs = pair
    policy = dataclasses.replace(police.config.peers["customs-nl"], screen_budget_per_day=1000)
    police.config = dataclasses.replace(
        police.config, peers=MappingProxyType({"customs-nl": policy})
    )
    first = _screen(police, customs)
    with police.open_store() as store:
        epoch = current_epoch(police, store, "wl")
        (tmp_path / "more.csv").write_text("ref,email\nP-9,c@example.org\n")
        ingest_file(store, tmp_path / "more.csv", "wl", police.config.canon_context(),
                    police.audit_key, executor=None)  # fmt: skip
        assert current_epoch(police, store, "wl").id == epoch.id  # same epoch, one more entry
        assert store.conn.execute("SELECT count(*) FROM screen_entries").fetchone()[0] == 12
    second = _screen(police, customs)  # the list changed: refused as stale, fetched again
    assert second.match_count == first.match_count + 1
    with police.open_store() as store:
        rotated = rotate_epoch(police, store, "wl", "op")
        assert rotated.id > epoch.id
        assert store.conn.execute(
            "SELECT count(*) FROM screen_entries WHERE epoch_id = ?", (epoch.id,)
        ).fetchone() == (0,)
    third = _screen(police, customs)
    assert third.match_count == second.match_count
    fetches = [b["fetches"] for e, b in _audit_events(customs.config.node_dir)
               if e == "screen.query"]  # fmt: skip
    assert fetches == [1, 1, 1]
    # The schedule rotates lazily too.
    police.config = dataclasses.replace(police.config, screen_epoch_hours=1)
    later = police.now() + __import__("datetime").timedelta(hours=2)
    police.now = lambda: later
    with police.open_store() as store:
        assert current_epoch(police, store, "wl").id > rotated.id


def test_screen_hits_are_records_seen_at_the_nodes_clock(pair: Any) -> None:
    police, customs = pair
    policy = dataclasses.replace(police.config.peers["customs-nl"], screen_budget_per_day=1000)
    police.config = dataclasses.replace(
        police.config, peers=MappingProxyType({"customs-nl": policy})
    )
    t0 = datetime.datetime(2026, 5, 1, 9, 0, tzinfo=datetime.UTC)
    customs.now = lambda: t0
    first = _screen(police, customs)
    with customs.open_store() as store:
        hits = store.hits()
    assert {_key(h) for h in hits} == {_key(m) for m in first.matches}
    assert {(h["first_seen"], h["last_seen"], h["sessions"]) for h in hits} == {
        ("2026-05-01T09:00:00+00:00", "2026-05-01T09:00:00+00:00", 1)
    }
    assert {(h["peer"], h["list"], h["role"], h["mode"], h["status"]) for h in hits} == {
        ("police-nl", "manifest", "initiator", "screen", "new")
    }
    later = t0 + datetime.timedelta(days=1)
    customs.now = lambda: later
    _screen(police, customs)
    with customs.open_store() as store:
        again = {h["id"]: h for h in store.hits()}
        [session] = [s for s in store.sessions() if s["started_at"] == later.isoformat()]
    assert set(again) == {h["id"] for h in hits}  # seen again: updated, none added
    assert {(h["first_seen"], h["last_seen"], h["sessions"]) for h in again.values()} == {
        ("2026-05-01T09:00:00+00:00", "2026-05-02T09:00:00+00:00", 2)
    }
    assert session["finished_at"] == later.isoformat()
    queries = [b for e, b in _audit_events(customs.config.node_dir) if e == "screen.query"]
    found = len(first.matches)
    assert [(q["hits"], q["new_hits"]) for q in queries] == [(found, len(hits)), (found, 0)]


class _Tampering(LocalTransport):
    async def screen(self, query: Any) -> Any:
        evaluated, proof = await super().screen(query)
        return evaluated, proof[:32] + bytes([proof[32] ^ 1]) + proof[33:]


def test_tampered_proof_fails_the_query(pair: Any) -> None:
    police, customs = pair
    with pytest.raises(PeerError, match="proof does not verify: peer police-nl"):
        _screen(police, customs, _Tampering(Answering.of(police), "customs-nl"))
    with customs.open_store() as store:
        assert store.hits() == []
        assert store.sessions()[-1]["status"] == "failed"


def test_build_over_a_pool_encodes_every_element_once(pair: Any, tmp_path: Path) -> None:
    """Thousands of elements in shrinking worker tasks: one entry each, tag = Finalize[:16]."""
    police, _ = pair
    (tmp_path / "big.csv").write_text(
        "ref,passport,label\n" + "".join(f"B-{i},NLD:X{i:07d},case {i}\n" for i in range(3000))
    )
    with ProcessPoolExecutor(2) as pool, police.open_store() as store:
        police = dataclasses.replace(police, runner=BatchRunner(pool, workers=2))
        ingest_file(store, tmp_path / "big.csv", "big", police.config.canon_context(),
                    police.audit_key, executor=None)  # fmt: skip
        epoch = rotate_epoch(police, store, "big", "op")
        assert build_encoded_list(police, store, epoch) == 6000
        assert build_encoded_list(police, store, epoch) == 0  # nothing left to encode
        sk, _ = epoch.key_pair()
        rows = store.conn.execute(
            "SELECT e.element, s.tag, s.sealed_label FROM screen_entries s "
            "JOIN elements e ON e.id = s.element_id WHERE s.epoch_id = ?",
            (epoch.id,),
        ).fetchall()
        assert len({element for element, _, _ in rows}) == len(rows) == 6000
        for element, tag, sealed in rows[::97]:
            output = oprf.evaluate(sk, element, oprf.MODE_VOPRF)
            assert tag == screening.tag_of(output)
            assert screening.open_label(output, sealed).startswith("case ")


class _RotatingElsewhere(Executor):
    """Runs tasks in-process; before the first, a second connection rotates the epoch, as
    another process serving the same store (`serve --workers`) or `epoch rotate` would."""

    def __init__(self, node: NodeContext, list_name: str) -> None:
        self.node, self.list_name, self.rotated = node, list_name, False

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        if not self.rotated:
            self.rotated = True
            with self.node.open_store() as other:
                rotate_epoch(self.node, other, self.list_name, "another process")
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def test_build_restarts_on_the_epoch_another_process_rotated_to(pair: Any) -> None:
    police, _ = pair
    police.runner = BatchRunner(_RotatingElsewhere(police, "wl"), workers=1)
    with police.open_store() as store:
        epoch = current_epoch(police, store, "wl")
        rotations = [b for e, b in _audit_events(police.config.node_dir) if e == "epoch.rotated"]
        assert [r["operator"] for r in rotations] == ["node", "another process"]
        assert epoch.id == rotations[-1]["epoch"]  # the build moved to the new epoch
        assert store.conn.execute(
            "SELECT epoch_id, count(*) FROM screen_entries GROUP BY epoch_id"
        ).fetchall() == [(epoch.id, 11)]


def _first_epoch(node_dir: Path, list_name: str, start: Any) -> int:
    node = NodeContext.load(node_dir, BatchRunner())
    start.wait()
    with node.open_store() as store:
        return current_epoch(node, store, list_name).id


def test_processes_serving_one_store_agree_on_one_new_epoch(pair: Any, tmp_path: Path) -> None:
    police, _ = pair
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(2, mp_context=context) as pool:
        for round_ in range(4):
            name = f"wl{round_}"
            (tmp_path / f"{name}.csv").write_text(RESPONDER_LIST)
            with police.open_store() as store:
                ingest_file(store, tmp_path / f"{name}.csv", name, police.config.canon_context(),
                            police.audit_key, executor=None)  # fmt: skip
            start = manager.Barrier(2)
            futures = [
                pool.submit(_first_epoch, police.config.node_dir, name, start) for _ in range(2)
            ]
            first, second = (f.result(timeout=60) for f in futures)
            assert first == second
            rotations = [b for e, b in _audit_events(police.config.node_dir)
                         if e == "epoch.rotated" and b["list"] == name]  # fmt: skip
            assert len(rotations) == 1


def test_epoch_schedule_in_config_is_validated(node: NodeConfig) -> None:
    from node.errors import ConfigError

    with pytest.raises(ConfigError, match="screen_epoch_hours"):
        dataclasses.replace(node, screen_epoch_hours=0)
    assert NodeConfig.load(node.node_dir).screen_epoch_hours == 168


_ = audit
