"""Mutual and count ECDH-PSI parties against Python's own set intersection."""

from random import Random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import psi
from crypto.errors import InvalidElement, ProtocolError
from crypto.groups import SUITES, TAG_SIZE
from crypto.psi import Initiator, Mode, Responder, run_locally

GROUPS = list(SUITES.values())
ids = [g.name for g in GROUPS]


def points(group, values):
    return group.hash_batch([b"v%d" % v for v in values])


def responder_for(group, packed, mode, peer_size):
    responder = Responder.with_new_key(group, packed, mode)
    responder.read_hello(peer_size)
    return responder


def session(group, xs, ys, mode, chunk_elements=5):
    initiator = Initiator.with_new_key(
        group, points(group, xs), mode, chunk_elements=chunk_elements
    )
    responder = Responder.with_new_key(
        group, points(group, ys), mode, chunk_elements=chunk_elements
    )
    run_locally(initiator, responder)
    return initiator, responder


sets = st.lists(st.integers(0, 400), max_size=120)


@pytest.mark.parametrize("group", GROUPS, ids=ids)
@settings(max_examples=15, deadline=None)
@given(xs=sets, ys=sets)
def test_mutual_gives_set_intersection_on_both_sides(group, xs, ys):
    initiator, responder = session(group, xs, ys, Mode.MUTUAL)
    common = set(xs) & set(ys)
    i_matches, r_matches = initiator.matches(), responder.matches()
    assert [pos for pos, _ in i_matches] == [i for i, x in enumerate(xs) if x in common]
    assert [pos for pos, _ in r_matches] == [i for i, y in enumerate(ys) if y in common]
    # The shared index pairs each side's matched records with the other's.
    by_index = {}
    for pos, j in r_matches:
        by_index.setdefault(j, set()).add(ys[pos])
    assert all(by_index[j] == {xs[pos]} for pos, j in i_matches)
    assert initiator.match_count() == len(common)
    assert (initiator.size, responder.size) == (len(set(xs)), len(set(ys)))


@pytest.mark.parametrize("group", GROUPS, ids=ids)
@settings(max_examples=15, deadline=None)
@given(xs=sets, ys=sets)
def test_count_gives_only_the_size(group, xs, ys):
    initiator, responder = session(group, xs, ys, Mode.COUNT)
    assert initiator.match_count() == len(set(xs) & set(ys))
    with pytest.raises(ProtocolError):
        initiator.matches()
    with pytest.raises(ProtocolError):
        responder.matches()


@pytest.mark.parametrize("group", GROUPS, ids=ids)
def test_larger_sets_with_default_chunks(group):
    xs = list(range(0, 600))
    ys = list(range(300, 5000, 3))
    initiator, responder = session(group, xs, ys, Mode.MUTUAL, chunk_elements=4096)
    common = set(xs) & set(ys)
    assert len(initiator.matches()) == len(common) == 100
    assert len(responder.matches()) == len(common)


def test_count_mode_shuffles_the_responders_reply():
    group = SUITES["x25519-blake3"]
    xs = list(range(200))
    initiator = Initiator.with_new_key(group, points(group, xs), Mode.COUNT)
    responder = responder_for(group, points(group, xs), Mode.COUNT, initiator.size)
    sent = b"".join(initiator.blinded_chunks())
    assert responder.evaluate(sent) == b""
    in_order = group.multiply(responder._key, sent)
    in_order_tags = [in_order[i : i + TAG_SIZE] for i in range(0, len(in_order), 32)]
    reply = responder.evaluated_rest()
    reply_tags = [reply[i : i + TAG_SIZE] for i in range(0, len(reply), TAG_SIZE)]
    assert sorted(reply_tags) == sorted(in_order_tags)
    assert reply_tags != in_order_tags


def test_fresh_key_per_session_and_deterministic_from_key():
    group = SUITES["x25519-blake3"]
    pts = points(group, range(10))
    first = b"".join(Initiator.with_new_key(group, pts, Mode.MUTUAL).blinded_chunks())
    second = b"".join(Initiator.with_new_key(group, pts, Mode.MUTUAL).blinded_chunks())
    assert set(first[i : i + 32] for i in range(0, 320, 32)).isdisjoint(
        second[i : i + 32] for i in range(0, 320, 32)
    )
    key = bytes(range(32))
    pinned = [
        b"".join(Initiator.from_key(group, pts, Mode.MUTUAL, key, rng=Random(7)).blinded_chunks())
        for _ in range(2)
    ]
    assert pinned[0] == pinned[1]


@pytest.mark.parametrize("group", GROUPS, ids=ids)
def test_bad_point_from_initiator_fails_cleanly(group):
    responder = responder_for(group, points(group, range(5)), Mode.MUTUAL, 3)
    chunk = points(group, [1]) + bytes(32) + points(group, [2])
    with pytest.raises(InvalidElement, match="element 1"):
        responder.evaluate(chunk)
    with pytest.raises(InvalidElement, match="whole number"):
        responder.evaluate(chunk[:-1])


@pytest.mark.parametrize("group", GROUPS, ids=ids)
def test_bad_point_from_responder_fails_cleanly(group):
    initiator = Initiator.with_new_key(group, points(group, range(5)), Mode.MUTUAL)
    initiator.read_hello_reply(2)
    with pytest.raises(InvalidElement, match="element 0"):
        initiator.read_blinded(b"\xff" * 32)


def test_sizes_beyond_declarations_are_refused():
    group = SUITES["x25519-blake3"]
    initiator = Initiator.with_new_key(group, points(group, range(3)), Mode.MUTUAL)
    responder = responder_for(group, points(group, range(3)), Mode.MUTUAL, 2)
    chunk = b"".join(initiator.blinded_chunks())
    with pytest.raises(ProtocolError, match="more than the 2 elements it declared"):
        responder.evaluate(chunk)
    with pytest.raises(ProtocolError, match="before its hello reply"):
        initiator.read_blinded(points(group, [1]))
    initiator.read_hello_reply(1)
    with pytest.raises(ProtocolError, match="more than the 1 elements"):
        initiator.read_blinded(points(group, [1, 2]))
    with pytest.raises(ProtocolError, match="more than the 3 elements sent"):
        initiator.read_evaluated(b"\x00" * TAG_SIZE * 4)


def test_results_before_completion_are_refused():
    group = SUITES["x25519-blake3"]
    initiator = Initiator.with_new_key(group, points(group, range(3)), Mode.MUTUAL)
    initiator.read_hello_reply(3)
    with pytest.raises(ProtocolError, match="0 of its 3 declared"):
        initiator.matches()
    responder = responder_for(group, points(group, range(3)), Mode.COUNT, 3)
    with pytest.raises(ProtocolError, match="sent 0 of its 3"):
        responder.evaluated_rest()
    with pytest.raises(ProtocolError, match="no reveal"):
        responder.read_reveal(b"")


def test_forgotten_tags_keep_the_matches_and_refuse_a_late_reveal():
    group = GROUPS[0]
    initiator, responder = session(group, range(40), range(20, 60), Mode.MUTUAL)
    with pytest.raises(ProtocolError, match="needed until the matches"):
        initiator.forget_tags()
    expected = list(initiator.matches()), list(responder.matches())
    initiator.forget_tags()
    responder.forget_tags()
    assert (list(initiator.matches()), list(responder.matches())) == expected
    assert initiator.match_count() == 20
    with pytest.raises(ProtocolError, match="let go before the reveal"):
        next(initiator.reveal_chunks())


# Tags from few halves, so that first 8 bytes repeat (among a peer's tags, or by chance) and
# tags equal in their first 8 bytes differ in the rest.
_halves = st.sampled_from([bytes([v]) * 8 for v in (0, 1, 7, 255)])
_tags = st.lists(st.tuples(_halves, _halves).map(b"".join), max_size=40)


@settings(max_examples=200, deadline=None)
@given(tags=_tags, among=_tags, step=st.integers(1, 5))
def test_lookup_finds_each_tag_and_the_last_place_it_is_held(tags, among, step):
    as_keys = lambda items: np.array(items, dtype=f"S{TAG_SIZE}")  # noqa: E731
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(psi, "_SORT_STEP", step)  # several sorted parts, even in small sets
        found, at = psi._lookup(as_keys(tags), as_keys(among), where=True)
        only, _ = psi._lookup(as_keys(tags), as_keys(among), where=False)
    held = {tag: index for index, tag in enumerate(among)}  # the last index of each
    expected = [i for i, tag in enumerate(tags) if tag in held]
    assert found.tolist() == expected
    assert at.tolist() == [held[tags[i]] for i in expected]
    assert only.tolist() == expected


def test_lookup_of_distinct_tags_takes_the_integer_path(monkeypatch):
    rng = np.random.default_rng(7)
    among = rng.integers(0, 256, size=(5000, TAG_SIZE), dtype=np.uint8)
    tags = rng.integers(0, 256, size=(3000, TAG_SIZE), dtype=np.uint8)
    tags[::3] = among[rng.permutation(5000)[:1000]]
    tags[1::3, 8:] = among[:1000, 8:]  # first 8 bytes their own, the rest shared: no match
    monkeypatch.setattr(psi, "_SORT_STEP", 700)
    monkeypatch.setattr(psi, "_lookup_bytes", None)  # would fail if called
    keys = lambda items: items.view(f"S{TAG_SIZE}").reshape(len(items))  # noqa: E731
    found, at = psi._lookup(keys(tags), keys(among), where=True)
    assert found.tolist() == list(range(0, 3000, 3))
    assert (among[at] == tags[found]).all()
