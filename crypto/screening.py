"""Screening (DESIGN §4): an encoded set of a responder's list and VOPRF queries against it.

Pure functions over bytes; batches spread over a `BatchRunner` when one is given.
Always RFC 9497 VOPRF (mode 0x01), so every evaluation carries a proof under the
epoch's published key and a querier can tell it is treated like every partner.

Glossary (RFC 9497 names, multiplicative notation as in crypto.oprf)
    y, x      an element of the responder's list / of the initiator's list (DESIGN §2)
    H(.)      HashToGroup in VOPRF mode: the ristretto point cached per element at ingest
    k, K      the epoch key pair: derive_key_pair(seed, epoch_info(list, epoch), VOPRF)
    F(k, y)   the 64-byte PRF output SHA-512(... || H(y)^k || "Finalize")
    tag(y)    F(k, y)[:16]: what an encoded set holds per element
    key(y)    HKDF-Expand-SHA256(prk = F(k, y), info = LABEL_INFO, 32): F is already a
              uniformly random 64-byte PRF output, so Extract is skipped (RFC 5869 §3.3)
    seal(y)   nonce (12 random bytes) || ChaCha20-Poly1305(key(y), nonce, label, aad = tag(y))
    r, B, E   the initiator's blinds, blinded elements H(x)^r and evaluated elements B^k
    pi        the batched DLEQ proof that log_G K == log_B E over the whole batch

Phases (R = responder, I = initiator)
    0. R, once per list and epoch: encode_entries(k, ys, H(y)s, labels) -> tag(y)s, seal(y)s
       (F computed unblinded by the key holder, one scalar multiplication per element)
    1. I fetches {tag(y), seal(y)} and K once per epoch and indexes the tags.
    2. I: blind(H(x)s) -> rs, Bs                                  I -> R: Bs (<= MAX_BATCH)
    3. R: blind_evaluate(k, K, Bs) -> Es, pi                      R -> I: Es, pi
    4. I: verify_and_finalize(K, xs, rs, Bs, Es, pi) -> F(k, x)s; x is a hit iff tag(x) is in
       the fetched set; open_label(F(k, x), seal(y)) recovers the label of a hit.
Per queried item: 3 scalar multiplications without the proof (blind, evaluate, unblind),
6 with it (R: + one for M; I: + two for M and Z). R learns only the batch size.

Errors (crypto.errors)
    InvalidElement     a blinded, evaluated or public-key element that is not a valid point
    InvalidScalar      a malformed key or blind
    ProtocolError      a batch that is empty or larger than MAX_BATCH, or ragged counts
    VerificationError  the proof does not verify (another key, a tampered evaluation or
                       proof), or a sealed label does not open under its entry's key
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from crypto import oprf
from crypto.batch import BatchRunner
from crypto.errors import ProtocolError, VerificationError

__all__ = [
    "LABEL_INFO",
    "MAX_BATCH",
    "NONCE_SIZE",
    "TAG_SIZE",
    "blind",
    "blind_evaluate",
    "encode_entries",
    "epoch_info",
    "epoch_key_pair",
    "label_key",
    "open_label",
    "seal_label",
    "tag_of",
    "verify_and_finalize",
]

TAG_SIZE = 16
NONCE_SIZE = 12
MAX_BATCH = 4096
"""Largest batch one Screen call carries (and one proof covers)."""
LABEL_INFO = b"blindmatch/v1 screening label"
_EXPAND_INFO = LABEL_INFO + b"\x01"  # T(1) = HMAC(PRK, info || 0x01)
_KEY_INFO = b"blindmatch/v1 screening "

Rng = Callable[[int], bytes]
_ELEMENT = oprf.ELEMENT_SIZE


def epoch_info(list_name: str, epoch: int) -> bytes:
    """DeriveKeyPair's public info for a list's epoch: prefix || name || 0x00 || u64(epoch)."""
    return _KEY_INFO + list_name.encode() + b"\x00" + epoch.to_bytes(8, "big")


def epoch_key_pair(seed: bytes, list_name: str, epoch: int) -> tuple[bytes, bytes]:
    """Derives the epoch's VOPRF key pair (k, K) from its 32-byte secret seed."""
    return oprf.derive_key_pair(seed, epoch_info(list_name, epoch), mode=oprf.MODE_VOPRF)


def tag_of(output: bytes) -> bytes:
    """The 16-byte comparison tag of a PRF output."""
    return output[:TAG_SIZE]


def label_key(output: bytes) -> bytes:
    """HKDF-Expand-SHA256(F, info=LABEL_INFO) to 32 bytes: the AEAD key of the entry's label."""
    # One output block of RFC 5869's Expand, spelled out: one C-speed HMAC per entry.
    return hmac.digest(output, _EXPAND_INFO, "sha256")


def seal_label(output: bytes, label: str, rng: Rng = os.urandom) -> bytes:
    """Seals `label` under the key derived from `output`: nonce || ciphertext || tag."""
    return _seal(output, label.encode(), rng(NONCE_SIZE))


def _seal(output: bytes, label: bytes, nonce: bytes) -> bytes:
    return nonce + ChaCha20Poly1305(label_key(output)).encrypt(nonce, label, tag_of(output))


def open_label(output: bytes, sealed: bytes) -> str:
    """Opens a label sealed for the entry whose PRF output is `output`."""
    if len(sealed) < NONCE_SIZE + 16:
        raise VerificationError("a sealed label is too short to open")
    try:
        plain = ChaCha20Poly1305(label_key(output)).decrypt(
            sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], tag_of(output)
        )
        return plain.decode()
    except (InvalidTag, UnicodeDecodeError):
        raise VerificationError("a sealed label does not open under its entry's key") from None


def encode_entries(
    sk: bytes,
    inputs: Sequence[bytes],
    packed_points: bytes,
    labels: Sequence[str | None],
    rng: Rng = os.urandom,
) -> tuple[bytes, list[bytes]]:
    """Returns (packed tags, sealed labels) of elements; b"" where an element has no label."""
    outputs = oprf.evaluate_points(sk, inputs, packed_points)
    if len(labels) != len(outputs):
        raise ProtocolError(f"{len(outputs)} elements but {len(labels)} labels")
    tags = b"".join(o[:TAG_SIZE] for o in outputs)
    nonces = rng(NONCE_SIZE * len(outputs))  # one call: ~0.5 µs saved per entry
    sealed = [
        _seal(o, label.encode(), nonces[i * NONCE_SIZE : (i + 1) * NONCE_SIZE]) if label else b""
        for i, (o, label) in enumerate(zip(outputs, labels, strict=True))
    ]
    return tags, sealed


# -- queries, a batch spread over the runner's workers ---------------------------------------


def _slices(count: int, runner: BatchRunner | None) -> list[tuple[int, int]]:
    if runner is None or runner.executor is None or count < runner.min_parallel:
        return [(0, count)]
    step = -(-count // runner.workers)
    return [(i, min(i + step, count)) for i in range(0, count, step)]


def _run(runner: BatchRunner | None, fn: Callable[..., Any], *args: Any) -> Any:
    return (runner or BatchRunner()).submit(fn, *args)


def _check_batch(count: int) -> None:
    if not 0 < count <= MAX_BATCH:
        raise ProtocolError(f"a screening batch holds 1 to {MAX_BATCH:,} elements, not {count:,}")


def _count(packed: bytes, what: str) -> int:
    if len(packed) % _ELEMENT:
        raise ProtocolError(f"{what}: {len(packed)} bytes is not a whole number of elements")
    return len(packed) // _ELEMENT


def blind(packed_points: bytes, runner: BatchRunner | None = None) -> tuple[bytes, bytes]:
    """Blinds cached points H(x) with fresh blinds: returns (packed rs, packed Bs)."""
    count = _count(packed_points, "points")
    parts = [
        _run(runner, oprf.blind_points, packed_points[a * _ELEMENT : b * _ELEMENT])
        for a, b in _slices(count, runner)
    ]
    results = [p.result() for p in parts]
    return b"".join(r for r, _ in results), b"".join(b for _, b in results)


def _evaluate_slice(sk: bytes, pk: bytes, blinded: bytes, start: int) -> tuple[bytes, bytes]:
    evaluated = oprf.blind_evaluate_batch(sk, blinded)
    m, _ = oprf.composite_sums(pk, blinded, evaluated, start, with_z=False)
    return evaluated, m


def blind_evaluate(
    sk: bytes,
    pk: bytes,
    packed_blinded: bytes,
    runner: BatchRunner | None = None,
    rng: Rng = os.urandom,
) -> tuple[bytes, bytes]:
    """Validates and evaluates a batch of Bs: returns (packed Es, 64-byte proof pi)."""
    count = _count(packed_blinded, "blinded elements")
    _check_batch(count)
    parts = [
        _run(runner, _evaluate_slice, sk, pk, packed_blinded[a * _ELEMENT : b * _ELEMENT], a)
        for a, b in _slices(count, runner)
    ]
    results = [p.result() for p in parts]
    m, _ = oprf.add_composites([(m, b"") for _, m in results])
    return b"".join(e for e, _ in results), oprf.prove_composites(sk, pk, m, rng)


def _finalize_slice(
    pk: bytes, inputs: Sequence[bytes], blinds: bytes, blinded: bytes, evaluated: bytes, start: int
) -> tuple[list[bytes], tuple[bytes, bytes]]:
    outputs = oprf.finalize_batch(inputs, blinds, evaluated)  # validates every E
    return outputs, oprf.composite_sums(pk, blinded, evaluated, start)


def verify_and_finalize(
    pk: bytes,
    inputs: Sequence[bytes],
    packed_blinds: bytes,
    packed_blinded: bytes,
    packed_evaluated: bytes,
    proof: bytes,
    runner: BatchRunner | None = None,
) -> list[bytes]:
    """Verifies pi over the batch under K, then returns F(k, x) for each input."""
    count = _count(packed_blinded, "blinded elements")
    _check_batch(count)
    if _count(packed_evaluated, "evaluated elements") != count or len(inputs) != count:
        raise ProtocolError(
            f"the responder evaluated {len(packed_evaluated) // _ELEMENT:,} elements "
            f"of a batch of {count:,}"
        )
    if len(packed_blinds) != count * oprf.SCALAR_SIZE:
        raise ProtocolError("one blind per blinded element is needed")
    parts = [
        _run(
            runner,
            _finalize_slice,
            pk,
            list(inputs[a:b]),
            packed_blinds[a * oprf.SCALAR_SIZE : b * oprf.SCALAR_SIZE],
            packed_blinded[a * _ELEMENT : b * _ELEMENT],
            packed_evaluated[a * _ELEMENT : b * _ELEMENT],
            a,
        )
        for a, b in _slices(count, runner)
    ]
    results = [p.result() for p in parts]
    m, z = oprf.add_composites([sums for _, sums in results])
    oprf.verify_composites(pk, m, z, proof)  # outputs are released only once it verifies
    return [o for outputs, _ in results for o in outputs]
