"""The one place where errors become what a peer is told, and a peer's status becomes an error.

A responder raises typed errors (`node.errors`, `crypto.errors`);
`peer_status` chooses the status code from one table and the text the peer
sees: the error's `peer` text where its raiser gave one, else a neutral text
for the code — never the operator's message, which may name local paths,
lists or counts (STYLE 12). Load refusals carry `retry-after` (seconds) and a
stale screening epoch `blindmatch-error: stale-epoch` as trailing metadata, so
an initiator need not read the text. Anything else escaping a handler is a
bug: INTERNAL with no detail, logged at the node.

An initiator receives a `grpc.aio.AioRpcError`; `error_from_rpc` turns it into
a `PeerError` (or `StaleEpoch`) naming the peer, the status and the peer's
reason, bounded and stripped of control characters.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from crypto import errors as crypto_errors
from node import errors

__all__ = ["PeerStatus", "error_from_rpc", "peer_status"]

RETRY_AFTER = "retry-after"
ERROR_KIND = "blindmatch-error"
STALE_EPOCH = "stale-epoch"
_DETAIL_CHARS = 300

_CODES: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (errors.UnknownPeer, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PolicyDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Incompatible, grpc.StatusCode.FAILED_PRECONDITION),
    (crypto_errors.UnsupportedOperation, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (crypto_errors.CryptoError, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.Stalled, grpc.StatusCode.ABORTED),
    (errors.StoreBusy, grpc.StatusCode.UNAVAILABLE),
    (errors.Interrupted, grpc.StatusCode.UNAVAILABLE),
    # The node's own trouble (a store it cannot open, an audit key): the peer can only retry.
    (errors.NodeError, grpc.StatusCode.UNAVAILABLE),
)

_NEUTRAL = {
    grpc.StatusCode.UNAUTHENTICATED: "your certificate is not accepted by this node",
    grpc.StatusCode.PERMISSION_DENIED: "this node's policy does not allow the request",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "over a limit this node sets; retry later",
    grpc.StatusCode.FAILED_PRECONDITION: "this node cannot serve the request as asked",
    grpc.StatusCode.NOT_FOUND: "not found on this node",
    grpc.StatusCode.INVALID_ARGUMENT: "a message of the request could not be used",
    grpc.StatusCode.ABORTED: "the call was aborted",
    grpc.StatusCode.UNAVAILABLE: "this node cannot answer now; retry later",
    grpc.StatusCode.INTERNAL: "internal error; the node's operator can see it in its log",
}


@dataclass(frozen=True)
class PeerStatus:
    """What a peer is told of a failed call."""

    code: grpc.StatusCode
    details: str
    metadata: tuple[tuple[str, str], ...] = ()


def peer_status(exc: BaseException) -> PeerStatus:
    """The status, text and metadata a peer sees for `exc` (INTERNAL for an unexpected error)."""
    code = next((c for kind, c in _CODES if isinstance(exc, kind)), grpc.StatusCode.INTERNAL)
    details = _NEUTRAL[code]
    if isinstance(exc, errors.NodeError) and exc.peer:
        details = exc.peer
    elif isinstance(exc, crypto_errors.CryptoError):
        details = str(exc)  # about the peer's own messages: sizes it declared, bytes it sent
    metadata: list[tuple[str, str]] = []
    if isinstance(exc, errors.NodeError) and exc.retry_after is not None:
        metadata.append((RETRY_AFTER, str(max(1, round(exc.retry_after)))))
    if isinstance(exc, errors.StaleEpoch):
        metadata.append((ERROR_KIND, STALE_EPOCH))
    return PeerStatus(code, _bounded(details), tuple(metadata))


def error_from_rpc(exc: grpc.aio.AioRpcError, peer: str) -> errors.NodeError:
    """Turns a failed call to `peer` into an error a person can act on."""
    code = exc.code()
    detail = _bounded(exc.details() or "")
    metadata = dict(exc.trailing_metadata() or ())
    if code is grpc.StatusCode.FAILED_PRECONDITION and metadata.get(ERROR_KIND) == STALE_EPOCH:
        return errors.StaleEpoch(detail)
    if code is grpc.StatusCode.UNAVAILABLE:
        return errors.PeerError(
            f"peer {peer} is unreachable, refused the TLS handshake, or stopped answering "
            f"({detail}); check that it is serving at the configured address and that both "
            "certificates come from the federation CA, then retry"
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return errors.PeerError(f"peer {peer} did not finish before the deadline; retry later")
    retry = metadata.get(RETRY_AFTER)
    hint = f" (retry after {retry} s)" if retry else ""
    return errors.PeerError(f"peer {peer} refused: {code.name}: {detail}{hint}")


def _bounded(text: str) -> str:
    """One line of printable text, at most 300 characters."""
    clean = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(clean.split())[:_DETAIL_CHARS]
