"""RFC 9497 OPRF and VOPRF over ristretto255 with SHA-512: pure functions, bytes in and out.

Glossary (the RFC's names; the group is written multiplicatively, as in psi_client.h)
    x         an input: an encoded element (DESIGN §2), any bytes
    H(x)      HashToGroup(x) = from_hash(expand_message_xmd(x, "HashToGroup-" || ctx, 64))
    k, K      the responder's secret key and public key K = G^k
    r         the initiator's blind: a fresh non-zero scalar per input
    F(k, x)   the PRF output: SHA-512(I2OSP(len(x), 2) || x || I2OSP(32, 2) || H(x)^k || "Finalize")
    ctx       contextString = "OPRFV1-" || I2OSP(mode, 1) || "-ristretto255-SHA512"
    pi        a batched DLEQ proof (c, s) that log_G K == log_{B_i} E_i for every i (VOPRF only)

Phases (I = initiator, the RFC's client; R = responder, the RFC's server):
    0. R: (k, K) = derive_key_pair(seed, info) or generate_key_pair()
          R may compute F(k, y) itself, unblinded: evaluate / evaluate_batch / evaluate_points
          (how the precomputed encoded set of a screening list is built, DESIGN §4)
    1. I: (r, B) = blind(x)                  B = H(x)^r                     I -> R: B
          batches: blind_batch(xs), or blind_points(cached H(x)s)
    2. R: E = blind_evaluate(k, B)           E = B^k                        R -> I: E
          batches: blind_evaluate_batch
          VOPRF: blind_evaluate_batch_verifiable(k, K, Bs) -> (Es, pi)      R -> I: Es, pi
    3. I: F = finalize(x, r, E)              N = E^(1/r) = H(x)^k, F = F(k, x)
          batches: finalize_batch
          VOPRF: verify_and_finalize_batch(K, xs, rs, Bs, Es, pi) checks pi first

Encodings: scalars are 32-byte little-endian, canonical (below the group order L) and
non-zero, as libsodium and the RFC's vectors write them; elements are 32-byte canonical
ristretto255 encodings; outputs are 64 bytes; a proof is c || s (64 bytes). Batch forms
take and return packed elements (32-byte encodings concatenated), never one object per
element. The mode (MODE_OPRF or MODE_VOPRF) enters HashToGroup, DeriveKeyPair and the
proof's DSTs, so an initiator and a responder must agree on it; Finalize itself does not
depend on it. Points cached from hash_to_group are valid only for the mode they were
hashed under.

Errors (crypto.errors)
    InvalidElement     a received element is not 32 bytes, not a canonical ristretto255
                       encoding, or the identity (blind_evaluate*, finalize*, verify_*,
                       blind_points, evaluate_points; batch messages name the position), or
                       an input hashes to the identity (hash_to_group, blind*, evaluate*;
                       probability 2^-252), or K is not the public key of k
                       (blind_evaluate_batch_verifiable)
    InvalidScalar      a key, blind or proof nonce is not 32 bytes, not canonical, or zero;
                       DeriveKeyPair found no non-zero scalar in 256 tries; `rng` keeps
                       yielding bytes that reduce to zero (a broken rng)
    ProtocolError      the counts of inputs, blinds and elements in one batch disagree, or a
                       verifiable batch is empty or larger than 65,536 elements
    VerificationError  a VOPRF proof is malformed or does not verify (verify_*)
    UnsupportedOperation  a mode other than MODE_OPRF or MODE_VOPRF
    ValueError         programming errors: expand_message_xmd lengths, a seed not 32 bytes
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
from collections.abc import Callable, Iterable, Sequence

from crypto._rbcl import rbcl
from crypto.errors import (
    InvalidElement,
    InvalidScalar,
    ProtocolError,
    UnsupportedOperation,
    VerificationError,
)

__all__ = [
    "ELEMENT_SIZE",
    "MODE_OPRF",
    "MODE_VOPRF",
    "OUTPUT_SIZE",
    "PROOF_SIZE",
    "SCALAR_SIZE",
    "blind",
    "blind_batch",
    "blind_evaluate",
    "blind_evaluate_batch",
    "blind_evaluate_batch_verifiable",
    "add_composites",
    "blind_points",
    "composite_sums",
    "context_string",
    "derive_key_pair",
    "evaluate",
    "evaluate_batch",
    "evaluate_points",
    "expand_message_xmd",
    "finalize",
    "finalize_batch",
    "generate_key_pair",
    "hash_to_group",
    "hash_to_scalar",
    "prove_composites",
    "verifiable_blind_evaluate",
    "verify_and_finalize_batch",
    "verify_composites",
    "verify_finalize",
]

MODE_OPRF = 0x00
MODE_VOPRF = 0x01

ELEMENT_SIZE = 32
SCALAR_SIZE = 32
OUTPUT_SIZE = 64
PROOF_SIZE = 2 * SCALAR_SIZE
# The composite transcript writes each index as I2OSP(i, 2).
_MAX_PROOF_BATCH = 1 << 16

Rng = Callable[[int], bytes]

_IDENTITY = bytes(ELEMENT_SIZE)
_ZERO_HALF = bytes(SCALAR_SIZE)
_ONE = (1).to_bytes(SCALAR_SIZE, "little")
_LEN_ELEMENT = ELEMENT_SIZE.to_bytes(2, "big")

_mul = rbcl.crypto_scalarmult_ristretto255
_mul_base = rbcl.crypto_scalarmult_ristretto255_base
_add = rbcl.crypto_core_ristretto255_add
_from_hash = rbcl.crypto_core_ristretto255_from_hash
_reduce = rbcl.crypto_core_ristretto255_scalar_reduce
_scalar_mul = rbcl.crypto_core_ristretto255_scalar_mul
_scalar_sub = rbcl.crypto_core_ristretto255_scalar_sub
_scalar_invert = rbcl.crypto_core_ristretto255_scalar_invert
_is_valid_point = rbcl.crypto_core_ristretto255_is_valid_point


def context_string(mode: int = MODE_OPRF) -> bytes:
    """Returns RFC 9497's contextString for ristretto255-SHA512 in `mode`."""
    if mode not in (MODE_OPRF, MODE_VOPRF):
        raise _unsupported(mode)
    return b"OPRFV1-" + bytes([mode]) + b"-ristretto255-SHA512"


def _unsupported(mode: int) -> UnsupportedOperation:
    return UnsupportedOperation(
        f"OPRF mode {mode!r} is not supported; use MODE_OPRF (0x00) or MODE_VOPRF (0x01)"
    )


_CONTEXT = {mode: context_string(mode) for mode in (MODE_OPRF, MODE_VOPRF)}
_HASH_TO_GROUP_DST = {mode: b"HashToGroup-" + ctx for mode, ctx in _CONTEXT.items()}
_HASH_TO_SCALAR_DST = {mode: b"HashToScalar-" + ctx for mode, ctx in _CONTEXT.items()}
_DERIVE_KEY_PAIR_DST = {mode: b"DeriveKeyPair" + ctx for mode, ctx in _CONTEXT.items()}
_SEED_DST = b"Seed-" + _CONTEXT[MODE_VOPRF]


def _dst(table: dict[int, bytes], mode: int) -> bytes:
    if mode not in table:
        raise _unsupported(mode)
    return table[mode]


# ---------------------------------------------------------------------------------------
# RFC 9380 expand_message_xmd with SHA-512 (b_in_bytes = 64, s_in_bytes = 128)

# Z_pad is exactly one SHA-512 block: absorb it once and copy the state per call.
_Z_PAD_STATE = hashlib.sha512(bytes(128))
_OVERSIZE_DST_PREFIX = b"H2C-OVERSIZE-DST-"


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """Returns `len_in_bytes` uniform bytes from `msg` under `dst` (RFC 9380 §5.3.1, SHA-512)."""
    ell = -(-len_in_bytes // 64)
    if not 0 <= len_in_bytes <= 65535 or ell > 255:
        raise ValueError(
            f"expand_message_xmd(SHA-512) yields 0 to 16,320 bytes, not {len_in_bytes}"
        )
    if len(dst) > 255:  # RFC 9380 §5.3.3
        dst = hashlib.sha512(_OVERSIZE_DST_PREFIX + dst).digest()
    dst_prime = dst + bytes([len(dst)])
    state = _Z_PAD_STATE.copy()
    state.update(msg)
    state.update(len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime)
    b_0 = state.digest()
    b_i = hashlib.sha512(b_0 + b"\x01" + dst_prime).digest()
    blocks = [b_i]
    b_0_int = int.from_bytes(b_0, "big")
    for i in range(2, ell + 1):
        mixed = (b_0_int ^ int.from_bytes(b_i, "big")).to_bytes(64, "big")
        b_i = hashlib.sha512(mixed + bytes([i]) + dst_prime).digest()
        blocks.append(b_i)
    return b"".join(blocks)[:len_in_bytes]


# ---------------------------------------------------------------------------------------
# Group helpers


def hash_to_group(input: bytes, mode: int = MODE_OPRF) -> bytes:
    """Hashes `input` to a ristretto255 element with RFC 9497's HashToGroup for `mode`."""
    return _hash_to_group(input, _dst(_HASH_TO_GROUP_DST, mode))


def _hash_to_group(input: bytes, dst: bytes) -> bytes:
    point: bytes = _from_hash(expand_message_xmd(input, dst, 64))
    if point == _IDENTITY:
        raise InvalidElement("an input hashes to the identity element; it cannot be evaluated")
    return point


def hash_to_scalar(input: bytes, dst: bytes) -> bytes:
    """Hashes `input` to a scalar under `dst` with RFC 9497's HashToScalar for ristretto255."""
    scalar: bytes = _reduce(expand_message_xmd(input, dst, 64))
    return scalar


def _random_scalar(rng: Rng) -> bytes:
    # A zero scalar from a working rng has probability 2^-252; a few in a row mean the
    # rng is broken (say, a test's constant bytes), so fail instead of looping forever.
    for _ in range(4):
        scalar: bytes = _reduce(rng(64))
        if scalar != _ZERO_HALF:
            return scalar
    raise InvalidScalar("the random number generator keeps yielding zero scalars")


def _is_canonical_scalar(scalar: bytes) -> bool:
    return (
        isinstance(scalar, bytes)
        and len(scalar) == SCALAR_SIZE
        and scalar != _ZERO_HALF
        and _reduce(scalar + _ZERO_HALF) == scalar
    )


def _check_scalar(scalar: bytes, what: str) -> None:
    if not _is_canonical_scalar(scalar):
        raise InvalidScalar(
            f"{what} must be a 32-byte little-endian scalar below the group order, not zero"
        )


def _where(what: str, index: int, count: int) -> str:
    return what if count == 1 else f"{what} {index}"


def _element_error(element: bytes, where: str) -> InvalidElement:
    if len(element) != ELEMENT_SIZE:
        reason = f"is {len(element)} bytes, not {ELEMENT_SIZE}"
    elif element == _IDENTITY:
        reason = "is the identity element"
    else:
        reason = "is not a canonical ristretto255 encoding"
    return InvalidElement(f"{where} {reason}; it is not a valid ristretto255 element")


def _count(packed: bytes, what: str) -> int:
    if len(packed) % ELEMENT_SIZE:
        raise InvalidElement(
            f"{what}: {len(packed)} bytes is not a whole number of {ELEMENT_SIZE}-byte "
            "elements (truncated or corrupted message?)"
        )
    return len(packed) // ELEMENT_SIZE


def _split(packed: bytes) -> list[bytes]:
    return [packed[i : i + ELEMENT_SIZE] for i in range(0, len(packed), ELEMENT_SIZE)]


def _check_element(element: bytes, where: str) -> None:
    if len(element) != ELEMENT_SIZE or element == _IDENTITY or not _is_valid_point(element):
        raise _element_error(element, where)


def _same_count(*counts: tuple[str, int]) -> int:
    if len({n for _, n in counts}) > 1:
        described = ", ".join(f"{n} {what}" for what, n in counts)
        raise ProtocolError(f"batch sizes disagree: {described}")
    return counts[0][1]


def _invert_batch(scalars: list[bytes]) -> list[bytes]:
    """Inverts non-zero scalars with one inversion (Montgomery's trick)."""
    prefix = []
    running = _ONE
    for scalar in scalars:
        prefix.append(running)
        running = _scalar_mul(running, scalar)
    inverse = _scalar_invert(running) if scalars else _ONE
    out = [b""] * len(scalars)
    for i in range(len(scalars) - 1, -1, -1):
        out[i] = _scalar_mul(prefix[i], inverse)
        inverse = _scalar_mul(inverse, scalars[i])
    return out


def _finalize_hash(input: bytes, element: bytes) -> bytes:
    return hashlib.sha512(
        len(input).to_bytes(2, "big") + input + _LEN_ELEMENT + element + b"Finalize"
    ).digest()


# ---------------------------------------------------------------------------------------
# Keys


def derive_key_pair(seed: bytes, info: bytes, mode: int = MODE_OPRF) -> tuple[bytes, bytes]:
    """Derives (sk, pk) from a 32-byte `seed` and public `info` (RFC 9497 §3.2.1)."""
    if len(seed) != SCALAR_SIZE:
        raise ValueError(f"DeriveKeyPair takes a {SCALAR_SIZE}-byte seed, not {len(seed)} bytes")
    derive_input = seed + len(info).to_bytes(2, "big") + info
    dst = _dst(_DERIVE_KEY_PAIR_DST, mode)
    for counter in range(256):
        sk = hash_to_scalar(derive_input + bytes([counter]), dst)
        if sk != _ZERO_HALF:
            return sk, _mul_base(sk)
    raise InvalidScalar("DeriveKeyPair found no non-zero scalar for this seed; use another seed")


def generate_key_pair(rng: Rng = os.urandom) -> tuple[bytes, bytes]:
    """Returns a fresh (sk, pk) drawn from `rng` (RFC 9497 GenerateKeyPair)."""
    sk = _random_scalar(rng)
    return sk, _mul_base(sk)


# ---------------------------------------------------------------------------------------
# Phase 1: Blind (initiator)


def blind(
    input: bytes, blind: bytes | None = None, rng: Rng = os.urandom, mode: int = MODE_OPRF
) -> tuple[bytes, bytes]:
    """Blinds `input` and returns (blind, blinded element); `blind` is for tests only."""
    blinds, blinded = blind_batch([input], blind, rng, mode)
    return blinds, blinded


def blind_batch(
    inputs: Sequence[bytes],
    blinds: bytes | None = None,
    rng: Rng = os.urandom,
    mode: int = MODE_OPRF,
) -> tuple[bytes, bytes]:
    """Blinds `inputs` and returns (packed blinds, packed blinded elements)."""
    dst = _dst(_HASH_TO_GROUP_DST, mode)
    points = b"".join(_hash_to_group(x, dst) for x in inputs)
    return blind_points(points, blinds, rng)


def blind_points(
    packed_points: bytes, blinds: bytes | None = None, rng: Rng = os.urandom
) -> tuple[bytes, bytes]:
    """Blinds already-hashed points H(x) and returns (packed blinds, packed blinded elements)."""
    count = _count(packed_points, "points")
    if blinds is None:
        blinds = b"".join(_random_scalar(rng) for _ in range(count))
    else:
        if len(blinds) % SCALAR_SIZE:
            raise InvalidScalar(f"blinds: {len(blinds)} bytes is not a whole number of scalars")
        _same_count(("points", count), ("blinds", len(blinds) // SCALAR_SIZE))
        for i in range(0, len(blinds), SCALAR_SIZE):
            _check_scalar(blinds[i : i + SCALAR_SIZE], _where("blind", i // SCALAR_SIZE, count))
    out = bytearray(len(packed_points))
    for i in range(0, len(packed_points), ELEMENT_SIZE):
        point = packed_points[i : i + ELEMENT_SIZE]
        try:
            out[i : i + ELEMENT_SIZE] = _mul(blinds[i : i + SCALAR_SIZE], point)
        except RuntimeError:
            raise _element_error(point, _where("point", i // ELEMENT_SIZE, count)) from None
    return blinds, bytes(out)


# ---------------------------------------------------------------------------------------
# Phase 2: BlindEvaluate (responder)


def blind_evaluate(sk: bytes, blinded_element: bytes) -> bytes:
    """Validates a blinded element and returns it raised to `sk`."""
    if len(blinded_element) != ELEMENT_SIZE:
        raise _element_error(blinded_element, "blinded element")
    return blind_evaluate_batch(sk, blinded_element)


def blind_evaluate_batch(sk: bytes, packed_blinded: bytes) -> bytes:
    """Validates packed blinded elements and returns each raised to `sk`, packed."""
    _check_scalar(sk, "secret key")
    count = _count(packed_blinded, "blinded elements")
    out = bytearray(len(packed_blinded))
    # libsodium rejects a non-canonical encoding, and a non-zero key maps only the
    # identity to the identity, which it refuses as a result: one call validates.
    for i in range(0, len(packed_blinded), ELEMENT_SIZE):
        element = packed_blinded[i : i + ELEMENT_SIZE]
        try:
            out[i : i + ELEMENT_SIZE] = _mul(sk, element)
        except RuntimeError:
            raise _element_error(
                element, _where("blinded element", i // ELEMENT_SIZE, count)
            ) from None
    return bytes(out)


# ---------------------------------------------------------------------------------------
# Phase 3: Finalize (initiator)


def finalize(input: bytes, blind: bytes, evaluated_element: bytes) -> bytes:
    """Unblinds an evaluated element and returns the 64-byte PRF output for `input`."""
    if len(evaluated_element) != ELEMENT_SIZE:
        raise _element_error(evaluated_element, "evaluated element")
    return finalize_batch([input], blind, evaluated_element)[0]


def finalize_batch(
    inputs: Sequence[bytes], packed_blinds: bytes, packed_evaluated: bytes
) -> list[bytes]:
    """Unblinds packed evaluated elements and returns the PRF output of each input."""
    if len(packed_blinds) % SCALAR_SIZE:
        raise InvalidScalar(f"blinds: {len(packed_blinds)} bytes is not a whole number of scalars")
    count = _same_count(
        ("inputs", len(inputs)),
        ("blinds", len(packed_blinds) // SCALAR_SIZE),
        ("evaluated elements", _count(packed_evaluated, "evaluated elements")),
    )
    blinds = _split(packed_blinds)
    for i, r in enumerate(blinds):
        _check_scalar(r, _where("blind", i, count))
    return _finalized(inputs, _invert_batch(blinds), packed_evaluated, "evaluated element")


# ---------------------------------------------------------------------------------------
# Direct evaluation by the key holder


def evaluate(sk: bytes, input: bytes, mode: int = MODE_OPRF) -> bytes:
    """Returns the PRF output F(sk, input) computed by the key holder (RFC 9497 Evaluate)."""
    return evaluate_batch(sk, [input], mode)[0]


def evaluate_batch(sk: bytes, inputs: Sequence[bytes], mode: int = MODE_OPRF) -> list[bytes]:
    """Returns F(sk, x) for each of `inputs`."""
    dst = _dst(_HASH_TO_GROUP_DST, mode)
    points = b"".join(_hash_to_group(x, dst) for x in inputs)
    return evaluate_points(sk, inputs, points)


def evaluate_points(sk: bytes, inputs: Sequence[bytes], packed_points: bytes) -> list[bytes]:
    """Returns F(sk, x) for each input, given its cached point H(x) in `packed_points`."""
    _check_scalar(sk, "secret key")
    _same_count(("inputs", len(inputs)), ("points", _count(packed_points, "points")))
    return _finalized(inputs, itertools.repeat(sk), packed_points, "point")


def _finalized(
    inputs: Sequence[bytes], scalars: Iterable[bytes], packed: bytes, what: str
) -> list[bytes]:
    """Finalize(x, scalar * element) for each input and packed element (counts checked)."""
    count = len(inputs)
    outputs = []
    for i, (x, scalar) in enumerate(zip(inputs, scalars, strict=False)):  # scalars may repeat
        element = packed[i * ELEMENT_SIZE : (i + 1) * ELEMENT_SIZE]
        try:
            product = _mul(scalar, element)
        except RuntimeError:
            raise _element_error(element, _where(what, i, count)) from None
        outputs.append(_finalize_hash(x, product))
    return outputs


# ---------------------------------------------------------------------------------------
# VOPRF: batched DLEQ proofs (RFC 9497 §2.2)

_HASH_TO_SCALAR_VOPRF = _HASH_TO_SCALAR_DST[MODE_VOPRF]


def _composites(
    pk: bytes, blinded: list[bytes], evaluated: list[bytes], sk: bytes | None
) -> tuple[bytes, bytes]:
    """ComputeCompositesFast when `sk` is given, else ComputeComposites: returns (M, Z)."""
    m, z = _composite_sums(pk, blinded, evaluated, 0, sk is None)
    return m, _mul(sk, m) if sk is not None else z


def _composite_sums(
    pk: bytes, blinded: list[bytes], evaluated: list[bytes], start: int, with_z: bool
) -> tuple[bytes, bytes]:
    """The sums M (and Z if `with_z`) over batch positions start, start + 1, ...; b"" if empty."""
    seed = hashlib.sha512(
        _LEN_ELEMENT + pk + len(_SEED_DST).to_bytes(2, "big") + _SEED_DST
    ).digest()
    prefix = len(seed).to_bytes(2, "big") + seed
    m = z = b""
    for i, (c_i, d_i) in enumerate(zip(blinded, evaluated, strict=True), start):
        transcript = (
            prefix + i.to_bytes(2, "big") + _LEN_ELEMENT + c_i + _LEN_ELEMENT + d_i + b"Composite"
        )
        weight = hash_to_scalar(transcript, _HASH_TO_SCALAR_VOPRF)
        term = _mul(weight, c_i)
        m = _add(term, m) if m else term
        if with_z:
            term = _mul(weight, d_i)
            z = _add(term, z) if z else term
    return m, z


def _challenge(pk: bytes, m: bytes, z: bytes, t2: bytes, t3: bytes) -> bytes:
    transcript = b"".join(_LEN_ELEMENT + e for e in (pk, m, z, t2, t3)) + b"Challenge"
    return hash_to_scalar(transcript, _HASH_TO_SCALAR_VOPRF)


def _check_proof_batch(count: int) -> None:
    if not 0 < count <= _MAX_PROOF_BATCH:
        raise ProtocolError(
            f"a verifiable batch holds 1 to {_MAX_PROOF_BATCH:,} elements, not {count:,}"
        )


def blind_evaluate_batch_verifiable(
    sk: bytes,
    pk: bytes,
    packed_blinded: bytes,
    rng: Rng = os.urandom,
    r: bytes | None = None,
) -> tuple[bytes, bytes]:
    """Evaluates packed blinded elements and returns (packed evaluated, 64-byte proof)."""
    packed_evaluated = blind_evaluate_batch(sk, packed_blinded)
    _check_proof_batch(len(packed_blinded) // ELEMENT_SIZE)
    if len(pk) != ELEMENT_SIZE or _mul_base(sk) != pk:
        raise InvalidElement("the public key given is not the public key of this secret key")
    if r is None:
        r = _random_scalar(rng)
    else:
        _check_scalar(r, "proof nonce")
    m, z = _composites(pk, _split(packed_blinded), _split(packed_evaluated), sk)
    t2 = _mul_base(r)
    t3 = _mul(r, m)
    c = _challenge(pk, m, z, t2, t3)
    s = _scalar_sub(r, _scalar_mul(c, sk))
    return packed_evaluated, c + s


def verifiable_blind_evaluate(
    sk: bytes,
    pk: bytes,
    blinded_element: bytes,
    rng: Rng = os.urandom,
    r: bytes | None = None,
) -> tuple[bytes, bytes]:
    """Evaluates one blinded element and returns (evaluated element, 64-byte proof)."""
    if len(blinded_element) != ELEMENT_SIZE:
        raise _element_error(blinded_element, "blinded element")
    return blind_evaluate_batch_verifiable(sk, pk, blinded_element, rng, r)


def _verify_proof(pk: bytes, blinded: list[bytes], evaluated: list[bytes], proof: bytes) -> None:
    if len(proof) != PROOF_SIZE:
        raise VerificationError(
            f"VOPRF proof is {len(proof)} bytes, not {PROOF_SIZE}; the proof does not verify"
        )
    c, s = proof[:SCALAR_SIZE], proof[SCALAR_SIZE:]
    for scalar in (c, s):
        if _reduce(scalar + _ZERO_HALF) != scalar or scalar == _ZERO_HALF:
            raise VerificationError("VOPRF proof holds a non-canonical or zero scalar")
    try:
        m, z = _composites(pk, blinded, evaluated, None)
        t2 = _add(_mul_base(s), _mul(c, pk))
        t3 = _add(_mul(s, m), _mul(c, z))
    except RuntimeError:  # a composite or commitment is the identity: only a forged proof
        raise VerificationError("VOPRF proof does not verify against the public key") from None
    if not hmac.compare_digest(_challenge(pk, m, z, t2, t3), c):
        raise VerificationError("VOPRF proof does not verify against the public key")


def verify_and_finalize_batch(
    pk: bytes,
    inputs: Sequence[bytes],
    packed_blinds: bytes,
    packed_blinded: bytes,
    packed_evaluated: bytes,
    proof: bytes,
) -> list[bytes]:
    """Verifies the responder's proof over the batch, then returns each input's PRF output."""
    _check_element(pk, "public key")
    count = _same_count(
        ("inputs", len(inputs)),
        ("blinded elements", _count(packed_blinded, "blinded elements")),
        ("evaluated elements", _count(packed_evaluated, "evaluated elements")),
    )
    _check_proof_batch(count)
    blinded = _split(packed_blinded)
    for i, element in enumerate(blinded):
        _check_element(element, _where("blinded element", i, count))
    # Finalizing first validates every evaluated element (InvalidElement, by position);
    # the outputs are released only once the proof verifies.
    outputs = finalize_batch(inputs, packed_blinds, packed_evaluated)
    _verify_proof(pk, blinded, _split(packed_evaluated), proof)
    return outputs


def verify_finalize(
    pk: bytes,
    input: bytes,
    blind: bytes,
    blinded_element: bytes,
    evaluated_element: bytes,
    proof: bytes,
) -> bytes:
    """Verifies the proof for one evaluated element and returns the PRF output of `input`."""
    if len(blinded_element) != ELEMENT_SIZE:
        raise _element_error(blinded_element, "blinded element")
    if len(evaluated_element) != ELEMENT_SIZE:
        raise _element_error(evaluated_element, "evaluated element")
    outputs = verify_and_finalize_batch(
        pk, [input], blind, blinded_element, evaluated_element, proof
    )
    return outputs[0]


# ---------------------------------------------------------------------------------------
# VOPRF proofs over a batch split into slices (a batch spread over worker processes)
#
# The composites M = sum d_i C_i and Z = sum d_i D_i are sums over the batch, and each
# weight d_i depends only on pk, i, C_i and D_i: slices starting at `start` compute
# partial sums (composite_sums) in parallel, add_composites joins them, and
# prove_composites / verify_composites finish the RFC's GenerateProof / VerifyProof.
# Together they give exactly blind_evaluate_batch_verifiable's proof and
# verify_and_finalize_batch's check.


def composite_sums(
    pk: bytes, packed_blinded: bytes, packed_evaluated: bytes, start: int = 0, with_z: bool = True
) -> tuple[bytes, bytes]:
    """Returns the partial composites (M, Z) of a slice at batch position `start`."""
    count = _same_count(
        ("blinded elements", _count(packed_blinded, "blinded elements")),
        ("evaluated elements", _count(packed_evaluated, "evaluated elements")),
    )
    if not start >= 0 or start + count > _MAX_PROOF_BATCH:
        raise ProtocolError(f"a verifiable batch holds at most {_MAX_PROOF_BATCH:,} elements")
    try:
        return _composite_sums(pk, _split(packed_blinded), _split(packed_evaluated), start, with_z)
    except RuntimeError:  # an element that is not a valid point
        raise InvalidElement("a blinded or evaluated element is not a valid point") from None


def add_composites(parts: Sequence[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """Adds partial composites (M, Z) of consecutive slices into the batch's."""
    m = z = b""
    for part_m, part_z in parts:
        if part_m:
            m = _add(m, part_m) if m else part_m
        if part_z:
            z = _add(z, part_z) if z else part_z
    return m, z


def prove_composites(
    sk: bytes, pk: bytes, m: bytes, rng: Rng = os.urandom, r: bytes | None = None
) -> bytes:
    """Returns the 64-byte proof (c, s) that Z = M^sk and pk = G^sk, given composite M."""
    _check_scalar(sk, "secret key")
    if len(pk) != ELEMENT_SIZE or _mul_base(sk) != pk:
        raise InvalidElement("the public key given is not the public key of this secret key")
    if r is None:
        r = _random_scalar(rng)
    else:
        _check_scalar(r, "proof nonce")
    z = _mul(sk, m)
    c = _challenge(pk, m, z, _mul_base(r), _mul(r, m))
    return c + _scalar_sub(r, _scalar_mul(c, sk))


def verify_composites(pk: bytes, m: bytes, z: bytes, proof: bytes) -> None:
    """Raises VerificationError unless `proof` shows log_G pk == log_M Z."""
    _check_element(pk, "public key")
    if len(proof) != PROOF_SIZE:
        raise VerificationError(
            f"VOPRF proof is {len(proof)} bytes, not {PROOF_SIZE}; the proof does not verify"
        )
    if len(m) != ELEMENT_SIZE or len(z) != ELEMENT_SIZE:
        raise VerificationError("VOPRF composites are missing; the proof does not verify")
    c, s = proof[:SCALAR_SIZE], proof[SCALAR_SIZE:]
    for scalar in (c, s):
        if _reduce(scalar + _ZERO_HALF) != scalar or scalar == _ZERO_HALF:
            raise VerificationError("VOPRF proof holds a non-canonical or zero scalar")
    try:
        t2 = _add(_mul_base(s), _mul(c, pk))
        t3 = _add(_mul(s, m), _mul(c, z))
    except RuntimeError:  # a composite or commitment is the identity: only a forged proof
        raise VerificationError("VOPRF proof does not verify against the public key") from None
    if not hmac.compare_digest(_challenge(pk, m, z, t2, t3), c):
        raise VerificationError("VOPRF proof does not verify against the public key")
