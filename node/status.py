"""The one place where errors become gRPC status codes, and status codes become errors.

A responder raises typed errors (`node.errors`, `crypto.errors`) and
`status_code()` chooses the status its peer sees; an initiator receives a
`grpc.RpcError` and `error_from_rpc()` turns it into a `PeerError` whose
message names the peer, the status and the peer's reason. Anything else that
escapes a handler is a bug: the peer gets INTERNAL with no detail, and the
node logs it.
"""

from __future__ import annotations

import grpc

from crypto import errors as crypto_errors
from node import errors

__all__ = ["error_from_rpc", "status_code"]

_STATUS: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (errors.UnknownPeer, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PolicyDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Incompatible, grpc.StatusCode.FAILED_PRECONDITION),
    (crypto_errors.UnsupportedOperation, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (crypto_errors.CryptoError, grpc.StatusCode.INVALID_ARGUMENT),
)


def status_code(exc: Exception) -> grpc.StatusCode | None:
    """Returns the status a peer should see for `exc`, or None for an unexpected error."""
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code
    return None


def error_from_rpc(exc: grpc.RpcError, peer: str) -> errors.PeerError:
    """Turns a failed call to `peer` into a PeerError a person can act on."""
    code = exc.code() if isinstance(exc, grpc.Call) else None
    detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
    if code is grpc.StatusCode.UNAVAILABLE:
        return errors.PeerError(
            f"peer {peer} is unreachable or refused the TLS handshake ({detail}); check that "
            "it is serving at the configured address and that both certificates come from "
            "the federation CA"
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.PeerError(f"peer {peer} did not finish before the deadline; retry later")
    name = code.name if code is not None else "UNKNOWN"
    return errors.PeerError(f"peer {peer} refused the session: {name}: {detail}")
