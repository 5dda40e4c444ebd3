"""Screening (DESIGN §4) in the node: key epochs, encoded sets, answering and running queries.

The math lives in `crypto.screening`; this module decides, stores and audits.

- `_responder`: the node holding the list (epochs, the encoded set, fetch and
  Screen answers, budgets).
- `_initiator`: the node screening its own list against a peer's (fetch and
  cache, blinded queries, proofs, labels, records).
"""

from node.screening._initiator import (
    EncodedSet,
    GrpcTransport,
    LocalTransport,
    OwnList,
    fetch_encoded_set,
    own_list,
    run_screen,
    screen_query,
)
from node.screening._responder import (
    SUITE,
    Epoch,
    FetchRequest,
    ScreenQuery,
    answer_fetch,
    answer_screen,
    build_encoded_list,
    current_epoch,
    rotate_epoch,
)

__all__ = [
    "SUITE",
    "EncodedSet",
    "Epoch",
    "FetchRequest",
    "GrpcTransport",
    "LocalTransport",
    "OwnList",
    "ScreenQuery",
    "answer_fetch",
    "answer_screen",
    "build_encoded_list",
    "current_epoch",
    "fetch_encoded_set",
    "own_list",
    "rotate_epoch",
    "run_screen",
    "screen_query",
]
