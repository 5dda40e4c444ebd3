"""What an agency's own system screens through a node's local HTTP API, and how it checks it.

Shared by the locust user (`loadtests.agency_user`), the harness that builds the
partner's list (`loadtests.run`) and the benchmark (`bench.api`); it imports no
locust (importing locust patches the process for gevent).

Identifier ``i`` is `identifier(i)`: by ``i`` modulo the kinds given (default
`KINDS`), an e-mail address, a mobile phone number or a passport with its
country (two elements: passport and passport_number); distinct for every ``i``
below 90,000,000. A partner's list of ``entries`` holds identifiers 0 to
``entries - 1`` as input rows (`list_row`, `write_list`: a ref and a label each);
a query draws distinct identifiers from 0 to ``2 x entries - 1``, so about half of
them hit. `screen_request` is the body of ``POST /v1/screen`` (docs/API.md)
without ``targets`` (the node's ``[[screen.target]]``), and `problem` says what
is wrong with an answer: a target in ``errors``, or hits other than exactly the
identifiers the list holds.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "KINDS",
    "LIST_COLUMNS",
    "PURPOSE",
    "REQUEST_PREFIX",
    "identifier",
    "kinds_from",
    "list_row",
    "problem",
    "request_name",
    "screen_request",
    "write_list",
]

PURPOSE = "load test: screening through the local API"
KINDS = ("email", "phone", "passport")
"""The identifier kinds `identifier` cycles through by default."""
REQUEST_PREFIX = "api screen"
"""How the names of the locust requests of screening through the API begin."""
LIST_COLUMNS = ("ref", "label", "email", "phone", "passport")
"""The columns of the partner's list (`write_list`)."""


def kinds_from(value: str | None) -> tuple[str, ...]:
    """Kinds from a comma-separated list (`KINDS` if empty); SystemExit naming unknown ones."""
    kinds = tuple(k.strip() for k in (value or "").split(",") if k.strip()) or KINDS
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SystemExit(f"identifier kinds {', '.join(unknown)} unknown; use {', '.join(KINDS)}")
    return kinds


def _kind(i: int, kinds: Sequence[str]) -> str:
    return kinds[i % len(kinds)]


def identifier(i: int, kinds: Sequence[str] = KINDS) -> dict[str, str]:
    """Identifier `i` as `POST /v1/screen` takes it (distinct for every i below 90,000,000)."""
    kind = _kind(i, kinds)
    if kind == "email":
        return {"type": "email", "value": f"traveller{i}@example.org"}
    if kind == "phone":
        return {"type": "phone", "value": f"+31 6 {10_000_000 + i:08d}"}
    return {"type": "passport", "value": f"X{i:08d}", "country": "NLD"}


def list_row(i: int, kinds: Sequence[str] = KINDS) -> dict[str, str]:
    """Identifier `i` as a row of an input file (`LIST_COLUMNS`), with a ref and a label."""
    row = {"ref": f"W{i}", "label": f"watchlist entry W{i}, duty desk +32 2 000 0000"}
    found = identifier(i, kinds)
    if found["type"] == "passport":
        row["passport"] = f"{found['country']}:{found['value']}"
    else:
        row[found["type"]] = found["value"]
    return row


def write_list(path: Path, entries: int, kinds: Sequence[str] = KINDS) -> Path:
    """Writes identifiers 0 .. `entries` - 1 as a CSV list for `blindmatch ingest`."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, LIST_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(list_row(i, kinds) for i in range(entries))
    return path


def screen_request(
    indices: Sequence[int], kinds: Sequence[str] = KINDS, purpose: str = PURPOSE
) -> dict[str, Any]:
    """The body of `POST /v1/screen` for identifiers `indices` (node.toml's targets)."""
    return {"purpose": purpose, "identifiers": [identifier(i, kinds) for i in indices]}


def problem(answer: Mapping[str, Any], indices: Sequence[int], entries: int) -> str | None:
    """Why an answer to `screen_request(indices)` is wrong, or None: a target in `errors`, or
    hits other than the identifiers a list of `entries` holds (those below `entries`).
    Reasons are short and carry no counts of a run, so locust groups them."""
    errors = answer.get("errors") or []
    if errors:
        first = errors[0]
        kind = first.get("error", {}).get("kind", "?")
        return f"{first.get('peer')}'s list {first.get('list')} gave no answer: {kind}"
    hit = {int(h["index"]) for h in answer.get("hits", [])}
    expected = {k for k, i in enumerate(indices) if i < entries}
    if hit - expected:
        return "an identifier the list does not hold was reported as a hit"
    if expected - hit:
        return "an identifier the list holds was not reported as a hit"
    return None


def request_name(size: int, largest: int) -> str:
    """The locust request name of a query of `size` identifiers (batches up to `largest`)."""
    return f"{REQUEST_PREFIX} 1" if size == 1 else f"{REQUEST_PREFIX} 2-{largest}"
