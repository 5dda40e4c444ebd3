"""Prime-order groups behind one small interface, one per crypto suite.

A `Group` hashes elements into the group, draws secret scalars and multiplies
packed batches of points (concatenated 32-byte encodings, no per-point objects).
Every point that enters `multiply` is decoded and validated first: a bad one
raises `InvalidElement` naming its position, and nothing is computed from it.

- `ristretto255-sha512`: RFC 9497's group. HashToGroup is RFC 9497's in VOPRF mode
  (mode 0x01's DST, so a cached point serves both mutual PSI and screening,
  which always runs the VOPRF); arithmetic is
  libsodium through `rbcl`. Supports scalar inversion.
- `x25519-blake3`: for mutual ECDH-PSI, where no inversion is needed. Hash:
  BLAKE3 XOF (domain-separated) -> two Elligator 2 maps added (RFC 9380's
  random-oracle construction, libsodium clears the cofactor) -> Montgomery u.
  Multiplication is X25519 (RFC 7748) through libsodium. X25519 clamps
  scalars, so results are always in the prime-order subgroup and
  ``X25519(a, X25519(b, P)) == X25519(b, X25519(a, P))``. Points on the twist
  are accepted as X25519 itself accepts them (Curve25519 is twist-secure);
  non-canonical and small-order points are rejected.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence, Sized
from typing import Protocol

import blake3
from nacl import bindings as sodium

from crypto import oprf
from crypto._rbcl import rbcl
from crypto.errors import InvalidElement, InvalidScalar, UnsupportedOperation

__all__ = [
    "ELEMENT_SIZE",
    "SUITES",
    "TAG_SIZE",
    "Group",
    "Ristretto255Sha512",
    "X25519Blake3",
    "get_suite",
    "split_packed",
    "tags_of",
]

ELEMENT_SIZE = 32
# Truncated comparison tags: 128 bits keep a false match below 2^-80 for a
# billion-by-a-billion comparison.
TAG_SIZE = 16

Rng = Callable[[int], bytes]


class Group(Protocol):
    """The operations the PSI parties need from a suite's group."""

    name: str
    supports_inversion: bool

    def hash_to_group(self, element: bytes) -> bytes:
        """Hashes one element to an encoded group point."""
        ...

    def hash_batch(self, elements: Sequence[bytes]) -> bytes:
        """Hashes many elements to packed encoded points."""
        ...

    def random_scalar(self, rng: Rng = os.urandom) -> bytes:
        """Returns a fresh secret scalar drawn from `rng`."""
        ...

    def multiply(self, scalar: bytes, points: bytes) -> bytes:
        """Validates packed points and returns each multiplied by `scalar`."""
        ...

    def invert_scalar(self, scalar: bytes) -> bytes:
        """Returns the multiplicative inverse of `scalar` modulo the group order."""
        ...

    def validate(self, points: bytes) -> None:
        """Raises `InvalidElement` unless `points` are packed valid non-identity points."""
        ...


def split_packed(points: Sized, what: str = "points") -> int:
    """Returns how many elements `points` packs, or raises if the length is ragged."""
    if len(points) % ELEMENT_SIZE:
        raise InvalidElement(
            f"{what}: {len(points)} bytes is not a whole number of "
            f"{ELEMENT_SIZE}-byte elements (truncated or corrupted message?)"
        )
    return len(points) // ELEMENT_SIZE


def tags_of(points: bytes) -> bytes:
    """Truncates packed points to packed comparison tags."""
    return b"".join(points[i : i + TAG_SIZE] for i in range(0, len(points), ELEMENT_SIZE))


def _invalid_ristretto(index: int) -> InvalidElement:
    return InvalidElement(
        f"element {index} is not a valid ristretto255 point "
        "(non-canonical encoding or the identity)"
    )


class Ristretto255Sha512:
    """ristretto255 with RFC 9497's HashToGroup (SHA-512); libsodium arithmetic."""

    name = "ristretto255-sha512"
    supports_inversion = True
    _IDENTITY = bytes(ELEMENT_SIZE)

    # HashToGroup under the VOPRF-mode DST (RFC 9497 mode 0x01): screening always runs
    # the VOPRF, and the point cached per element at ingest must be the one its
    # BlindEvaluate/Evaluate start from. Mutual PSI with this suite only needs some
    # random-oracle hash into the group, so the same cached point serves both.
    def hash_to_group(self, element: bytes) -> bytes:
        return oprf.hash_to_group(element, mode=oprf.MODE_VOPRF)

    def hash_batch(self, elements: Sequence[bytes]) -> bytes:
        return b"".join(oprf.hash_to_group(e, mode=oprf.MODE_VOPRF) for e in elements)

    def random_scalar(self, rng: Rng = os.urandom) -> bytes:
        scalar: bytes = rbcl.crypto_core_ristretto255_scalar_reduce(rng(64))
        _check_scalar(scalar)  # zero only from a broken rng (probability 2^-252)
        return scalar

    def multiply(self, scalar: bytes, points: bytes) -> bytes:
        _check_scalar(scalar)
        split_packed(points)
        out = bytearray(len(points))
        mul = rbcl.crypto_scalarmult_ristretto255
        for i in range(0, len(points), ELEMENT_SIZE):
            point = points[i : i + ELEMENT_SIZE]
            try:
                out[i : i + ELEMENT_SIZE] = mul(scalar, point)
            except RuntimeError:
                # libsodium refuses non-canonical encodings, points off the
                # group and the identity; the scalar is ours and non-zero.
                raise _invalid_ristretto(i // ELEMENT_SIZE) from None
        return bytes(out)

    def invert_scalar(self, scalar: bytes) -> bytes:
        _check_scalar(scalar)
        inverse: bytes = rbcl.crypto_core_ristretto255_scalar_invert(scalar)
        return inverse

    def validate(self, points: bytes) -> None:
        split_packed(points)
        for i in range(0, len(points), ELEMENT_SIZE):
            point = points[i : i + ELEMENT_SIZE]
            if point == self._IDENTITY or not rbcl.crypto_core_ristretto255_is_valid_point(point):
                raise _invalid_ristretto(i // ELEMENT_SIZE)


# Curve25519 field prime, and the u-coordinates of the points of small order
# (RFC 7748 §7 / the libsodium blocklist), in canonical form.
_P = 2**255 - 19
_SMALL_ORDER_U = frozenset(
    u.to_bytes(32, "little")
    for u in (
        0,
        1,
        325606250916557431795983626356110631294008115727848805560023387167927233504,
        39382357235489614581723060781553021112529911719440698176882885853963445705823,
        _P - 1,
    )
)


class X25519Blake3:
    """Curve25519 Montgomery u-coordinates; BLAKE3 + Elligator 2 hash; libsodium X25519."""

    name = "x25519-blake3"
    supports_inversion = False
    _CONTEXT = "blindmatch/v1 x25519-blake3 hash-to-group"

    def hash_to_group(self, element: bytes) -> bytes:
        return self.hash_batch([element])

    def hash_batch(self, elements: Sequence[bytes]) -> bytes:
        # Edwards y of each hashed point, then u = (1 + y) / (1 - y) with one
        # batched inversion (Montgomery's trick): a Python pow per element
        # would cost more than the whole Elligator map.
        from_uniform = sodium.crypto_core_ed25519_from_uniform
        add = sodium.crypto_core_ed25519_add
        ys = []
        for element in elements:
            wide = blake3.blake3(element, derive_key_context=self._CONTEXT).digest(64)
            edwards = add(from_uniform(wide[:32]), from_uniform(wide[32:]))
            y = int.from_bytes(edwards, "little") & ((1 << 255) - 1)
            if y == 1:  # the identity; probability 2^-252, but never emit it
                raise InvalidElement("element hashes to the identity; it cannot be matched")
            ys.append(y)
        denominators = [(1 - y) % _P for y in ys]
        inverses = _batch_invert(denominators)
        return b"".join(
            ((1 + y) * inv % _P).to_bytes(32, "little") for y, inv in zip(ys, inverses, strict=True)
        )

    def random_scalar(self, rng: Rng = os.urandom) -> bytes:
        # X25519 clamps, so any 32 bytes but zeros is a valid, non-zero scalar.
        scalar = rng(32)
        _check_scalar(scalar)
        return scalar

    def multiply(self, scalar: bytes, points: bytes) -> bytes:
        _check_scalar(scalar)
        split_packed(points)
        # libsodium's X25519 on raw bytes: 33 µs a multiplication here against
        # 45 µs for OpenSSL's through `cryptography` (key objects included),
        # with identical results (both are RFC 7748).
        mul = sodium.crypto_scalarmult
        out = bytearray(len(points))
        for i in range(0, len(points), ELEMENT_SIZE):
            point = points[i : i + ELEMENT_SIZE]
            if point[31] & 0x80 or point in _SMALL_ORDER_U or int.from_bytes(point, "little") >= _P:
                raise _bad_u(i)
            try:
                out[i : i + ELEMENT_SIZE] = mul(scalar, point)
            except RuntimeError:  # libsodium's all-zero result: a small-order point
                raise _bad_u(i) from None
        return bytes(out)

    def invert_scalar(self, scalar: bytes) -> bytes:
        raise UnsupportedOperation(
            "x25519-blake3 has no scalar inversion; use ristretto255-sha512 for screening"
        )

    def validate(self, points: bytes) -> None:
        split_packed(points)
        for i in range(0, len(points), ELEMENT_SIZE):
            point = points[i : i + ELEMENT_SIZE]
            if point[31] & 0x80 or point in _SMALL_ORDER_U or int.from_bytes(point, "little") >= _P:
                raise _bad_u(i)


def _bad_u(offset: int) -> InvalidElement:
    return InvalidElement(
        f"element {offset // ELEMENT_SIZE} is not a valid x25519 point "
        "(non-canonical u-coordinate or a point of small order)"
    )


def _check_scalar(scalar: bytes) -> None:
    if len(scalar) != 32 or not any(scalar):
        raise InvalidScalar("a scalar must be 32 bytes and not zero")


def _batch_invert(values: list[int]) -> list[int]:
    """Inverts many non-zero field elements with one exponentiation."""
    prefix = []
    running = 1
    for v in values:
        prefix.append(running)
        running = running * v % _P
    inverse = pow(running, _P - 2, _P)
    out = [0] * len(values)
    for i in range(len(values) - 1, -1, -1):
        out[i] = prefix[i] * inverse % _P
        inverse = inverse * values[i] % _P
    return out


SUITES: dict[str, Group] = {g.name: g for g in (Ristretto255Sha512(), X25519Blake3())}


def get_suite(name: str) -> Group:
    """Returns the group of a suite by name, or raises `UnsupportedOperation`."""
    try:
        return SUITES[name]
    except KeyError:
        raise UnsupportedOperation(
            f"unknown crypto suite {name!r}; supported: {', '.join(sorted(SUITES))}"
        ) from None
