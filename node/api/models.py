"""The API's request and response bodies (pydantic), as `/docs` shows them.

Requests forbid unknown fields (a misspelt field is an error naming it, not
silently ignored) and bound every string and list; the same limits as the CLI's
(`node.policy`, `node.data.store`, `node.data.identifiers`). Responses have the
shape of the CLI's `--json` output for the same thing (DESIGN §6).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from node.data.identifiers import IDENTIFIER_FIELDS
from node.data.store import LIST_NAME, Store
from node.policy import MAX_PURPOSE_CHARS
from node.rpc.live_screening import MAX_IDENTIFIERS, MAX_TARGETS

__all__ = [
    "SCREEN_TYPES",
    "AckRequest",
    "AuditVerification",
    "ErrorResponse",
    "Hit",
    "ListSummary",
    "PeerReport",
    "RecordChange",
    "RecordRemoval",
    "ScreenRequest",
    "ScreenResponse",
    "SessionRow",
]

MAX_SCREEN_IDENTIFIERS = MAX_IDENTIFIERS
"""Identifiers one screening request may carry (a larger batch is split by the caller)."""
MAX_SCREEN_TARGETS = MAX_TARGETS
MAX_IDENTIFIER_FIELDS = 8
MAX_FIELD_CHARS = 1_000
SCREEN_TYPES = frozenset(IDENTIFIER_FIELDS)
"""The identifier types a screening request may carry, each with its fields (`person`: `name`
and `dob`; `passport`: `value` and an optional `country`)."""
_AGENCY = r"^[a-z0-9][a-z0-9-]{1,62}$"


def _printable(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    text = value.replace("\r\n", "\n").strip()
    if not text.replace("\n", "").isprintable():
        raise ValueError(f"{what} must be printable text (no control characters)")
    return text


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=MAX_FIELD_CHARS)


# -- errors -------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    kind: str = Field(description="what went wrong, e.g. invalid_input, not_found, conflict")
    message: str = Field(description="one line saying what and, for fields, which")


class ErrorResponse(BaseModel):
    """Every error's body."""

    error: ErrorBody


# -- hits ---------------------------------------------------------------------------------------


class Hit(BaseModel):
    """One hit, as `blindmatch hits --json` prints it."""

    id: int
    peer: str
    list: str
    ref: str
    type: str
    peer_label: str | None
    role: str
    mode: str
    status: Literal["new", "acknowledged"]
    first_seen: str
    last_seen: str
    sessions: int


class AcknowledgedHit(Hit):
    """A hit just acknowledged, with by whom, when and the note."""

    acknowledged_by: str | None = None
    acknowledged_at: str | None = None
    note: str | None = None


class AckRequest(_Request):
    """An acknowledgement: what was done about the hit, and by whom (default: the API user)."""

    by: str | None = Field(
        None,
        min_length=1,
        max_length=Store.MAX_ACKNOWLEDGER_CHARS,
        description="the person who followed the hit up (default: the API user's name)",
    )
    note: str = Field(
        min_length=1,
        max_length=Store.MAX_NOTE_CHARS,
        description="what was done about it; kept with the hit, never in the audit log",
    )

    @field_validator("by")
    @classmethod
    def _by(cls, value: str | None) -> str | None:
        text = _printable(value, "by")
        if text is not None and (not text or "\n" in text):
            raise ValueError("by must name a person on one line")
        return text

    @field_validator("note")
    @classmethod
    def _note(cls, value: str) -> str:
        text = _printable(value, "note")
        if not text:
            raise ValueError("note must say what was done about the hit")
        return text


# -- lists and records --------------------------------------------------------------------------


class ListSummary(BaseModel):
    """One list, as `blindmatch lists --json` prints it."""

    list: str
    kind: str
    records: int
    elements: int
    version: int
    updated: str


RecordRow = dict[str, str | int | float | None]
"""One record as an input file's row: `ref`, identifier columns, `label`, and for an
operations list `valid_from`, `valid_until`, `lat`, `lon`, `radius_m`, `start`, `end`."""


class RecordChange(BaseModel):
    """A record added or replaced."""

    list: str
    ref: str
    elements: int = Field(description="the identifiers' elements stored for the record")


class RecordRemoval(BaseModel):
    """A record erased, as `blindmatch records remove` does."""

    list: str
    records: int
    elements: int
    hits: int
    epoch: int | None = Field(
        description="the list's new screening key epoch, if it had one (partners fetch again)"
    )


# -- peers, sessions, audit ---------------------------------------------------------------------


class PeerReport(BaseModel):
    """A peer's policy (as `peer list --json`) and its health, checked now over mTLS."""

    agency: str
    address: str
    lists: list[str]
    modes: list[str]
    release_labels: bool
    sessions_per_hour: int
    max_concurrent: int
    max_set_size: int
    screen_budget: int
    reachable: bool
    error: str | None
    certificate: dict[str, Any] | None


class SessionRow(BaseModel):
    """A session as the node recorded it."""

    id: str
    peer: str
    role: str
    mode: str
    suite: str
    list: str
    peer_list: str | None
    purpose: str
    local_count: int | None
    peer_count: int | None
    match_count: int | None
    status: str
    started_at: str
    finished_at: str | None


class AuditVerification(BaseModel):
    """The outcome of re-checking the audit log's chain and every signature."""

    ok: bool
    entries: int = Field(description="entries checked and found valid")
    head: str = Field(description="the last valid entry, SEQ:HASH; record it to detect truncation")
    failed_seq: int | None
    reason: str | None


# -- screening ----------------------------------------------------------------------------------


class Identifier(BaseModel):
    """One identifier to screen: its type and the fields an input row gives that type."""

    model_config = ConfigDict(
        extra="allow",
        str_max_length=MAX_FIELD_CHARS,
        json_schema_extra={
            "examples": [
                {"type": "passport", "value": "C01X00T47", "country": "DEU"},
                {"type": "person", "name": "Hans Müller", "dob": "1980-04-03"},
                {"type": "phone", "value": "+31 6 1234 5678"},
            ]
        },
    )
    type: str = Field(description="an identifier type, e.g. passport, person, phone, iban")

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in SCREEN_TYPES:
            raise ValueError(
                f"unknown identifier type {value[:40]!r}; known: {', '.join(sorted(SCREEN_TYPES))}"
            )
        return value

    def fields(self) -> dict[str, Any]:
        """The identifier as the screening service takes it: type and its fields."""
        return {"type": self.type, **(self.model_extra or {})}


class Target(_Request):
    """A partner's list to screen against."""

    peer: str = Field(pattern=_AGENCY, description="the partner's agency id")
    list: str = Field(pattern=f"^{LIST_NAME.pattern}$", description="the partner's list")


class ScreenRequest(_Request):
    """Identifiers to screen now against partners' lists (DESIGN §7)."""

    purpose: str = Field(
        min_length=1,
        max_length=MAX_PURPOSE_CHARS,
        description="why the check is made; audited",
    )
    identifiers: list[Identifier] = Field(min_length=1, max_length=MAX_SCREEN_IDENTIFIERS)
    targets: list[Target] | None = Field(
        None,
        min_length=1,
        max_length=MAX_SCREEN_TARGETS,
        description="partner lists to screen against (default: node.toml's [[screen.target]])",
    )

    @field_validator("purpose")
    @classmethod
    def _purpose(cls, value: str) -> str:
        text = value.strip()
        if not text or not text.isprintable():
            raise ValueError("purpose must be printable text on one line")
        return text

    @field_validator("identifiers")
    @classmethod
    def _fields_bounded(cls, value: list[Identifier]) -> list[Identifier]:
        for i, identifier in enumerate(value):
            extra = identifier.model_extra or {}
            if len(extra) > MAX_IDENTIFIER_FIELDS:
                raise ValueError(f"identifiers[{i}] has more than {MAX_IDENTIFIER_FIELDS} fields")
            for name, field in extra.items():
                if field is not None and not isinstance(field, str | int):
                    raise ValueError(f"identifiers[{i}].{name} must be text")
                if isinstance(field, str) and len(field) > MAX_FIELD_CHARS:
                    raise ValueError(
                        f"identifiers[{i}].{name} is longer than {MAX_FIELD_CHARS:,} characters"
                    )
        return value


class ScreenHit(BaseModel):
    index: int = Field(description="the position of the identifier in the request")
    type: str = Field(description="the element type that matched, e.g. passport, person_year")
    peer: str
    list: str
    peer_label: str | None


class TargetError(BaseModel):
    peer: str
    list: str
    error: ErrorBody


class ScreenResponse(BaseModel):
    """Hits, and the partner lists that could not be screened (the others still answer)."""

    hits: list[ScreenHit]
    errors: list[TargetError]
