"""Consulting and acknowledging hits, audited: the one implementation of the CLI and the API.

Listing hits is a consultation of personal data and acknowledging one is a
decision about it: each is one audit entry (`hits.viewed`, `hit.acknowledged`)
written in the same transaction as what it records, naming who (`operator`:
the OS user or `--operator` at the CLI, the API user's name), the filters or the
hit's id, peer, list and type, and counts; never a ref, a label or a note.
Every function blocks on SQLite: call it off the event loop.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.data import audit
from node.data.store import Store

__all__ = ["HitFilters", "acknowledge_hit", "view_hits"]


@dataclass(frozen=True)
class HitFilters:
    """Which hits to list; each filter given narrows them (`hits --new --since --peer --list`)."""

    new_only: bool = False
    since: dt.datetime | None = None
    peer: str | None = None
    list_name: str | None = None

    def to_audit(self) -> dict[str, Any]:
        """The filters as the `hits.viewed` entry records them."""
        return {
            "new_only": self.new_only,
            "since": self.since.isoformat() if self.since else None,
            "peer": self.peer,
            "list": self.list_name,
        }

    def any(self) -> bool:
        """Whether any filter is set."""
        return any(self.to_audit().values())


def view_hits(
    store: Store,
    signing_key: Ed25519PrivateKey,
    operator: str,
    filters: HitFilters,
    limit: int | None = None,
    with_acknowledgement: bool = False,
) -> list[dict[str, Any]]:
    """The hits as `hits --json` prints them (at most `limit`; with who acknowledged each if
    asked), once their consultation is audited (`hits.viewed`)."""
    # Read before the write lock is taken (sessions record meanwhile); returned only once
    # the consultation is audited.
    hits = store.hits(
        new_only=filters.new_only,
        since=filters.since,
        peer=filters.peer,
        list_name=filters.list_name,
        limit=limit,
        with_acknowledgement=with_acknowledgement,
    )
    with store.transaction() as conn:
        fields = {"operator": operator, **filters.to_audit(), "count": len(hits)}
        audit.append(conn, signing_key, "hits.viewed", fields)
    return hits


def acknowledge_hit(
    store: Store,
    signing_key: Ed25519PrivateKey,
    operator: str,
    hit_id: int,
    by: str,
    note: str | None,
) -> dict[str, Any]:
    """Acknowledges a new hit by the person `by`, audited (`hit.acknowledged`); returns it.

    Raises NotFound for an unknown id, Conflict for a hit acknowledged already,
    ConfigError for an unusable name or note; nothing changes then.
    """
    by, note = Store.check_acknowledgement(by, note)
    with store.transaction() as conn:
        hit = store.acknowledge_hit(hit_id, by, note)
        fields = {
            "operator": operator,
            "by": by,
            "hit_id": hit["id"],
            "peer": hit["peer"],
            "list": hit["list"],
            "type": hit["type"],
            "note_chars": len(note or ""),
        }
        audit.append(conn, signing_key, "hit.acknowledged", fields)
    return hit
