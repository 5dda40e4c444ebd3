"""Errors raised by the crypto layer.

    CryptoError
    ├── InvalidElement        bytes that are not a valid group element (from a peer or a file)
    ├── InvalidScalar         a scalar of the wrong length or zero
    ├── UnsupportedOperation  the suite cannot do this (inversion on x25519-blake3)
    ├── VerificationError     a VOPRF proof does not verify
    └── ProtocolError         a party got a message it cannot accept now (order, size)

All carry a message a person can act on. Errors about secrets stay opaque: they
say *that* a check failed, never a key or an intermediate value. Every class
pickles cleanly, because batches run in worker processes.
"""

__all__ = [
    "CryptoError",
    "InvalidElement",
    "InvalidScalar",
    "ProtocolError",
    "UnsupportedOperation",
    "VerificationError",
]


class CryptoError(Exception):
    """Base class of every error raised by `crypto`."""


class InvalidElement(CryptoError):
    """Bytes that do not decode to a valid, non-identity group element."""


class InvalidScalar(CryptoError):
    """A scalar of the wrong length, or zero."""


class UnsupportedOperation(CryptoError):
    """The suite does not support this operation."""


class VerificationError(CryptoError):
    """A proof or authenticated value failed to verify."""


class ProtocolError(CryptoError):
    """A protocol message arrived out of order or with inconsistent sizes."""
