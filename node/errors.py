"""Errors raised by the node layer.

    NodeError
    ├── InvalidIdentifier   a value that is not a valid identifier of its type (has .type, .reason)
    ├── InvalidInput        a malformed input file: bad header, unknown column, undecodable line
    │   └── IngestRejected  an ingest that stored nothing (--strict rejects, or no record)
    ├── ConfigError         node.toml or a command-line option that cannot be used as given
    ├── NotFound            a list, peer, session or file that does not exist
    ├── Conflict            a change the current state forbids: a hit acknowledged already, a
    │                       record or user that exists already
    ├── PolicyDenied        the local policy for this peer does not allow the request
    ├── UnknownPeer         a caller whose certificate names no configured peer
    │   └── CertificateRevoked  a caller whose certificate the installed federation CRL revokes
    ├── LimitExceeded       a set size, session rate or budget over the policy's limit
    ├── Incompatible        a peer speaking another protocol version or suite
    │   └── StaleEpoch      a screening query against a rotated epoch or changed list
    ├── StoreBusy           the store is locked by another writer for longer than its timeout
    ├── ExecutorUnavailable the Dask scheduler cannot be reached, went away, or lost a batch
    ├── Stalled             the other side of a stream sent nothing for `idle_seconds`
    ├── Interrupted         the operator stopped the command (Ctrl-C) or the node is stopping
    ├── PeerError           a peer failed, refused or answered something unusable
    └── AuditError          an audit key or stored audit entry that cannot be used as it is

Two audiences (STYLE 12). The message (`str(exc)`) is for the operator at this
node: what is wrong and how to fix it, naming files and commands. `peer`, when
given, is what a *peer* may be told about a refusal of its request; it never
names local paths, lists the peer may not see, counts or internals.
`node.rpc.status` is the one place that turns an error into what a peer sees,
and uses a neutral text per class where `peer` is not given. `retry_after`
(seconds) tells a peer refused for load when to come back.

Messages never contain secrets. `InvalidIdentifier` may quote the rejected
value back to the operator who supplied it; never put it in the audit log or
send it to a peer. Every class pickles cleanly (attributes travel in the
instance dict), because batches run in worker processes. Errors are translated
to gRPC status codes and CLI exit codes in one place, not where they are raised.
"""

__all__ = [
    "AuditError",
    "ConfigError",
    "Conflict",
    "InvalidIdentifier",
    "IngestRejected",
    "InvalidInput",
    "NodeError",
    "NotFound",
    "PeerError",
    "PolicyDenied",
    "UnknownPeer",
    "CertificateRevoked",
    "LimitExceeded",
    "Incompatible",
    "StaleEpoch",
    "Stalled",
    "StoreBusy",
    "ExecutorUnavailable",
    "Interrupted",
]


class NodeError(Exception):
    """Base class of every error raised by `node`; `peer` is the text a peer may see."""

    def __init__(
        self, *args: object, peer: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(*args)
        self.peer = peer
        self.retry_after = retry_after


class InvalidIdentifier(NodeError):
    """A value that is not a valid identifier of its type; `reason` says why and how to fix it."""

    def __init__(self, type: str, reason: str) -> None:
        super().__init__(type, reason)  # never `peer=`: the value stays with its operator
        self.type = type
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class InvalidInput(NodeError):
    """An input file that cannot be read as a list: malformed, bad header or unknown column."""


class IngestRejected(InvalidInput):
    """An ingest that stored nothing (--strict and rows rejected, or no record at all).

    `result` is the ingest's result, with the rejections, for the operator.
    """

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message, result)
        self.result = result

    def __str__(self) -> str:
        return str(self.args[0])


class ConfigError(NodeError):
    """A configuration value or command-line option that cannot be used as given."""


class NotFound(NodeError):
    """A list, peer, session or file that does not exist."""


class Conflict(NodeError):
    """A change the current state forbids: done already, or what it would create exists."""


class PolicyDenied(NodeError):
    """A request that the local policy for this peer does not allow."""


class PeerError(NodeError):
    """A peer that failed, refused the request or sent an unusable answer."""


class AuditError(NodeError):
    """An audit key file or stored audit entry that cannot be used as it is."""


class UnknownPeer(NodeError):
    """A caller whose certificate names an agency that is not a configured peer."""


class CertificateRevoked(UnknownPeer):
    """A caller whose certificate is revoked by the federation CRL this node installed."""


class LimitExceeded(NodeError):
    """A declared set size, session rate or screening budget over the policy's limit."""


class Incompatible(NodeError):
    """A peer speaking a protocol version or crypto suite this node does not support."""


class StaleEpoch(Incompatible):
    """A screening query naming an epoch or list version the responder no longer serves."""


class StoreBusy(NodeError):
    """The store stayed locked by another writer for longer than its busy timeout."""


class ExecutorUnavailable(NodeError):
    """The Dask cluster that runs the node's batches cannot be reached or stopped answering."""


class Stalled(NodeError):
    """The other side of a stream sent nothing (or read nothing) for the idle timeout."""


class Interrupted(NodeError):
    """Work stopped by the operator (Ctrl-C) or by the node shutting down."""
