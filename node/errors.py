"""Errors raised by the node layer.

    NodeError
    ├── InvalidIdentifier   a value that is not a valid identifier of its type (has .type, .reason)
    ├── InvalidInput        a malformed input file: bad header, unknown column, undecodable line
    ├── ConfigError         node.toml or a command-line option that cannot be used as given
    ├── NotFound            a list, peer, session or file that does not exist
    ├── PolicyDenied        the local policy for this peer does not allow the request
    └── PeerError           a peer failed, refused or answered something unusable

All carry a message a person can act on: what is wrong and how to fix it.
Messages never contain secrets. `InvalidIdentifier` may quote the rejected
value back to the operator who supplied it; never put it in the audit log or
send it to a peer. Every class pickles cleanly, because batches run in worker
processes. Errors are translated to gRPC status codes and CLI exit codes in
one place, not where they are raised.
"""

__all__ = [
    "ConfigError",
    "InvalidIdentifier",
    "InvalidInput",
    "NodeError",
    "NotFound",
    "PeerError",
    "PolicyDenied",
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


class ConfigError(NodeError):
    """A configuration value or command-line option that cannot be used as given."""


class NotFound(NodeError):
    """A list, peer, session or file that does not exist."""


class PolicyDenied(NodeError):
    """A request that the local policy for this peer does not allow."""


class PeerError(NodeError):
    """A peer that failed, refused the request or sent an unusable answer."""
