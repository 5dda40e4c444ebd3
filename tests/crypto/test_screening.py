"""Screening crypto: the encoded set, sealed labels, and VOPRF queries split over workers."""

from __future__ import annotations

import hashlib
from concurrent.futures import ProcessPoolExecutor

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import oprf, screening
from crypto.batch import BatchRunner
from crypto.errors import InvalidElement, ProtocolError, VerificationError
from crypto.groups import SUITES

SEED = bytes(range(32))


def _points(xs: list[bytes]) -> bytes:
    return b"".join(oprf.hash_to_group(x, oprf.MODE_VOPRF) for x in xs)


def _query(sk: bytes, pk: bytes, xs: list[bytes], runner: BatchRunner | None = None) -> list[bytes]:
    blinds, blinded = screening.blind(_points(xs), runner)
    evaluated, proof = screening.blind_evaluate(sk, pk, blinded, runner)
    return screening.verify_and_finalize(pk, xs, blinds, blinded, evaluated, proof, runner)


@pytest.fixture(scope="module")
def runner() -> BatchRunner:
    pool = ProcessPoolExecutor(2)
    yield BatchRunner(pool, workers=2, min_parallel=4)
    pool.shutdown()


def test_ristretto_suite_caches_voprf_mode_points() -> None:
    x = b"blindmatch/v1\x00passport\x00NLD:AB1234567"
    assert SUITES["ristretto255-sha512"].hash_to_group(x) == oprf.hash_to_group(x, oprf.MODE_VOPRF)


def test_epoch_keys_are_voprf_derive_key_pair_and_differ_by_list_and_epoch() -> None:
    sk, pk = screening.epoch_key_pair(SEED, "wl", 7)
    info = b"blindmatch/v1 screening wl\x00" + (7).to_bytes(8, "big")
    assert (sk, pk) == oprf.derive_key_pair(SEED, info, oprf.MODE_VOPRF)
    assert screening.epoch_key_pair(SEED, "wl", 8)[0] != sk
    assert screening.epoch_key_pair(SEED, "wl2", 7)[0] != sk


def test_label_key_is_hkdf_expand_sha256() -> None:
    output = hashlib.sha512(b"x").digest()
    expected = HKDFExpand(hashes.SHA256(), 32, screening.LABEL_INFO).derive(output)
    assert screening.label_key(output) == expected


@pytest.mark.parametrize("parallel", [False, True])
@settings(max_examples=10, deadline=None)
@given(
    ys=st.lists(st.binary(max_size=24), max_size=12, unique=True),
    xs=st.lists(st.binary(max_size=24), min_size=1, max_size=12, unique=True),
)
def test_query_hits_are_the_set_intersection(parallel, runner, ys, xs) -> None:
    sk, pk = screening.epoch_key_pair(SEED, "wl", 1)
    labels = [f"label {i}" if i % 2 else None for i in range(len(ys))]
    tags, sealed = screening.encode_entries(sk, ys, _points(ys), labels)
    by_tag = {tags[i * 16 : i * 16 + 16]: sealed[i] for i in range(len(ys))}
    outputs = _query(sk, pk, xs, runner if parallel else None)
    assert outputs == oprf.evaluate_batch(sk, xs, oprf.MODE_VOPRF)  # F(k, x), unblinded
    hits = {x for x, o in zip(xs, outputs, strict=True) if screening.tag_of(o) in by_tag}
    assert hits == set(xs) & set(ys)
    for x, o in zip(xs, outputs, strict=True):
        if x in hits and by_tag[screening.tag_of(o)]:
            assert screening.open_label(o, by_tag[screening.tag_of(o)]) == labels[ys.index(x)]


def test_split_proof_equals_the_rfc_batch_proof(runner) -> None:
    sk, pk = screening.epoch_key_pair(SEED, "wl", 1)
    _, blinded = oprf.blind_points(_points([b"a%d" % i for i in range(10)]))
    r = oprf.hash_to_scalar(b"nonce", b"test")
    evaluated, proof = oprf.blind_evaluate_batch_verifiable(sk, pk, blinded, r=r)
    parts = [oprf.composite_sums(pk, blinded[:96], evaluated[:96], 0, with_z=False),
             oprf.composite_sums(pk, blinded[96:], evaluated[96:], 3, with_z=False)]  # fmt: skip
    m, _ = oprf.add_composites(parts)
    assert oprf.prove_composites(sk, pk, m, r=r) == proof
    split_evaluated, split_proof = screening.blind_evaluate(sk, pk, blinded, runner)
    assert split_evaluated == evaluated
    xs = [b"a%d" % i for i in range(10)]
    blinds, blinded = screening.blind(_points(xs), runner)
    evaluated, proof = screening.blind_evaluate(sk, pk, blinded, runner)
    # The RFC's verifier accepts the split proof, and the split verifier the RFC's outputs.
    assert oprf.verify_and_finalize_batch(pk, xs, blinds, blinded, evaluated, proof) == (
        screening.verify_and_finalize(pk, xs, blinds, blinded, evaluated, proof, runner)
    )


def _answered(xs: list[bytes]) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes]:
    sk, pk = screening.epoch_key_pair(SEED, "wl", 1)
    blinds, blinded = screening.blind(_points(xs))
    evaluated, proof = screening.blind_evaluate(sk, pk, blinded)
    return pk, sk, blinds, blinded, evaluated, proof


@pytest.mark.parametrize("parallel", [False, True])
def test_tampered_evaluation_or_proof_or_key_is_detected(parallel, runner) -> None:
    xs = [b"x%d" % i for i in range(8)]
    pk, sk, blinds, blinded, evaluated, proof = _answered(xs)
    use = runner if parallel else None
    other_sk, other_pk = screening.epoch_key_pair(SEED, "wl", 2)
    # An element evaluated under another key: a valid point, but the proof fails.
    swapped = evaluated[:32] + oprf.blind_evaluate_batch(other_sk, blinded[32:64]) + evaluated[64:]
    with pytest.raises(VerificationError):
        screening.verify_and_finalize(pk, xs, blinds, blinded, swapped, proof, use)
    # A flipped byte in the evaluation: not a point, or not the proven one.
    flipped = evaluated[:40] + bytes([evaluated[40] ^ 1]) + evaluated[41:]
    with pytest.raises((VerificationError, InvalidElement)):
        screening.verify_and_finalize(pk, xs, blinds, blinded, flipped, proof, use)
    for position in (0, 33, 63):
        bad = proof[:position] + bytes([proof[position] ^ 4]) + proof[position + 1 :]
        with pytest.raises(VerificationError):
            screening.verify_and_finalize(pk, xs, blinds, blinded, evaluated, bad, use)
    with pytest.raises(VerificationError):  # evaluated honestly, but not under the published key
        screening.verify_and_finalize(other_pk, xs, blinds, blinded, evaluated, proof, use)
    with pytest.raises(VerificationError):  # a reordered answer
        reordered = evaluated[32:64] + evaluated[:32] + evaluated[64:]
        screening.verify_and_finalize(pk, xs, blinds, blinded, reordered, proof, use)
    assert len(screening.verify_and_finalize(pk, xs, blinds, blinded, evaluated, proof, use)) == 8


def test_batch_limits_and_ragged_answers() -> None:
    sk, pk = screening.epoch_key_pair(SEED, "wl", 1)
    with pytest.raises(ProtocolError):
        screening.blind_evaluate(sk, pk, b"")
    with pytest.raises(ProtocolError):
        screening.blind_evaluate(sk, pk, _points([b"x"]) * (screening.MAX_BATCH + 1))
    with pytest.raises(InvalidElement):
        screening.blind_evaluate(sk, pk, bytes(32))
    pk, sk, blinds, blinded, evaluated, proof = _answered([b"a", b"b"])
    with pytest.raises(ProtocolError):
        screening.verify_and_finalize(pk, [b"a", b"b"], blinds, blinded, evaluated[:32], proof)


def test_sealed_label_opens_only_under_its_output() -> None:
    output, other = hashlib.sha512(b"1").digest(), hashlib.sha512(b"2").digest()
    sealed = screening.seal_label(output, "Case 1; contact ops")
    assert screening.open_label(output, sealed) == "Case 1; contact ops"
    assert sealed != screening.seal_label(output, "Case 1; contact ops")  # fresh nonce
    for bad in (other, output[:16] + other[16:]):
        with pytest.raises(VerificationError):
            screening.open_label(bad, sealed)
    with pytest.raises(VerificationError):
        screening.open_label(output, sealed[:-1] + bytes([sealed[-1] ^ 1]))
    with pytest.raises(VerificationError):
        screening.open_label(output, b"short")
