"""`/v1/lists`: the node's lists, and one record added, replaced or erased (admins only).

A record is given as one input file's row and goes through the same checks and
canonicalisation as `blindmatch ingest` (`node.data.ingest.ingest_record`), in
one transaction, audited (`record.added`, `record.replaced`). Erasure is `blindmatch
records remove`'s (`node.sessions.erasure.remove_record`): the record, its
elements and hits go, the list's screening keys rotate, the audit keeps who and why.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request

from node.api.auth import Admin, Analyst
from node.api.errors import ApiError
from node.api.models import ListSummary, RecordChange, RecordRemoval, RecordRow
from node.api.routes.common import node_of, off_loop
from node.data.ingest import IngestResult, ingest_record
from node.data.store import LIST_NAME
from node.policy import MAX_PURPOSE_CHARS
from node.sessions.erasure import Erasure, remove_record

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["lists and records"])
MAX_COLUMNS = 64
MAX_REF_CHARS = 1_000
_NAME = Path(pattern=f"^{LIST_NAME.pattern}$", description="the list's name")
_REF = Path(min_length=1, max_length=MAX_REF_CHARS, description="the record's ref, exactly")
_ROW = Body(
    description="the record as an input file's row: ref, identifier columns (see 'blindmatch "
    "columns'), label; for an operations list valid_from, valid_until, lat, lon, radius_m, "
    "start, end",
    examples=[{"ref": "T-0042", "passport": "DEU:C01X00T47", "label": "Op Nightjar, desk 4"}],
)


@router.get("/lists", response_model=list[ListSummary], summary="The node's lists")
async def lists(request: Request, who: Analyst) -> list[dict[str, Any]]:
    """Every list as `blindmatch lists --json` prints it."""
    node = node_of(request)
    return await off_loop(lambda: [info.to_json() for info in node.store().lists()])


def _checked_row(row: dict[str, Any], ref: str | None = None) -> dict[str, Any]:
    if len(row) > MAX_COLUMNS:
        raise ApiError(422, "invalid_input", f"body: more than {MAX_COLUMNS} columns")
    if ref is not None:
        given = row.get("ref")
        if given is not None and str(given).strip() != ref.strip():
            raise ApiError(
                422, "invalid_input", "ref: differs from the ref in the path; leave it out"
            )
        row = {**row, "ref": ref}
    return row


def _change(result: IngestResult, ref: str) -> dict[str, Any]:
    return {"list": result.name, "ref": ref.strip(), "elements": result.elements}


@router.post(
    "/lists/{name}/records",
    status_code=201,
    response_model=RecordChange,
    summary="Add one record (admin; audited)",
    responses={409: {"description": "the list has a record with this ref already"}},
)
async def add_record(
    request: Request,
    who: Admin,
    name: str = _NAME,
    row: RecordRow = _ROW,
) -> dict[str, Any]:
    """Adds a record to an existing list, checked as `blindmatch ingest --strict` checks a row."""
    node = node_of(request)
    row = _checked_row(row)

    def add() -> IngestResult:
        return ingest_record(
            node.store(), name, row, node.config.canon_context(), node.audit_key, operator=who.name
        )

    result = await off_loop(add)
    return _change(result, str(row.get("ref")))


@router.put(
    "/lists/{name}/records/{ref:path}",
    response_model=RecordChange,
    summary="Replace one record (admin; audited)",
    responses={404: {"description": "no such list or record"}},
)
async def replace_record(
    request: Request,
    who: Admin,
    name: str = _NAME,
    ref: str = _REF,
    row: RecordRow = _ROW,
) -> dict[str, Any]:
    """Replaces a record's identifiers, label and window; its hits no longer supported go."""
    node = node_of(request)
    row = _checked_row(row, ref)

    def replace() -> IngestResult:
        return ingest_record(
            node.store(),
            name,
            row,
            node.config.canon_context(),
            node.audit_key,
            replace=True,
            operator=who.name,
        )

    return _change(await off_loop(replace), ref)


@router.delete(
    "/lists/{name}/records/{ref:path}",
    response_model=RecordRemoval,
    summary="Erase one record (admin; audited)",
    responses={404: {"description": "no such list or record"}},
)
async def remove(
    request: Request,
    reason: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_PURPOSE_CHARS,
            description="why the record is erased, for the data protection officer (audited; "
            "e.g. a court order or ticket number, never an identifier)",
        ),
    ],
    who: Admin,
    name: str = _NAME,
    ref: str = _REF,
) -> dict[str, Any]:
    """Erases the record, its elements and hits, and rotates the list's screening keys."""
    node = node_of(request)
    if not reason.strip() or not reason.isprintable():
        raise ApiError(422, "invalid_input", "query.reason: must be printable text on one line")

    def erase() -> Erasure:
        return remove_record(node, node.store(), name, ref, reason, who.name)

    done = await off_loop(erase)
    return {
        "list": done.list,
        "records": done.erased.records,
        "elements": done.erased.elements,
        "hits": done.erased.hits,
        "epoch": done.epoch,
    }
