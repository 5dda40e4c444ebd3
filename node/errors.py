"""Errors raised by the node layer.

    NodeError
    ├── InvalidIdentifier   a value that is not a valid identifier of its type (has .type, .reason)
    ├── InvalidInput        a malformed input file: bad header, unknown column, undecodable line
    │   └── IngestRejected  a --strict ingest that stored nothing because rows were rejected
    ├── ConfigError         node.toml or a command-line option that cannot be used as given
    ├── NotFound            a list, peer, session or file that does not exist
    ├── PolicyDenied        the local policy for this peer does not allow the request
    ├── UnknownPeer         a caller whose certificate names no configured peer
    ├── LimitExceeded       a set size, session rate or budget over the policy's limit
    ├── Incompatible        a peer speaking another protocol version or suite
    │   └── StaleEpoch      a screening query against a rotated epoch or changed list
    ├── PeerError           a peer failed, refused or answered something unusable
    └── AuditError          an audit key or stored audit entry that cannot be used as it is

All carry a message a person can act on: what is wrong and how to fix it.
Messages never contain secrets. `InvalidIdentifier` may quote the rejected
value back to the operator who supplied it; never put it in the audit log or
send it to a peer. Every class pickles cleanly, because batches run in worker
processes. Errors are translated to gRPC status codes and CLI exit codes in
one place, not where they are raised.
"""

__all__ = [
    "AuditError",
    "ConfigError",
    "InvalidIdentifier",
    "IngestRejected",
    "InvalidInput",
    "NodeError",
    "NotFound",
    "PeerError",
    "PolicyDenied",
    "UnknownPeer",
    "LimitExceeded",
    "Incompatible",
    "StaleEpoch",
]


class NodeError(Exception):
    """Base class of every error raised by `node`."""


class InvalidIdentifier(NodeError):
    """A value that is not a valid identifier of its type; `reason` says why and how to fix it."""

    def __init__(self, type: str, reason: str) -> None:
        super().__init__(type, reason)
        self.type = type
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class InvalidInput(NodeError):
    """An input file that cannot be read as a list: malformed, bad header or unknown column."""


class IngestRejected(InvalidInput):
    """A --strict ingest that stored nothing because rows were rejected; `result` lists them."""

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message, result)
        self.result = result

    def __str__(self) -> str:
        return str(self.args[0])


class ConfigError(NodeError):
    """A configuration value or command-line option that cannot be used as given."""


class NotFound(NodeError):
    """A list, peer, session or file that does not exist."""


class PolicyDenied(NodeError):
    """A request that the local policy for this peer does not allow."""


class PeerError(NodeError):
    """A peer that failed, refused the request or sent an unusable answer."""


class AuditError(NodeError):
    """An audit key file or stored audit entry that cannot be used as it is."""


class UnknownPeer(NodeError):
    """A caller whose certificate names an agency that is not a configured peer."""


class LimitExceeded(NodeError):
    """A declared set size, session rate or screening budget over the policy's limit."""


class Incompatible(NodeError):
    """A peer speaking a protocol version or crypto suite this node does not support."""


class StaleEpoch(Incompatible):
    """A screening query naming an epoch or list version the responder no longer serves."""
