"""Events in time and place, and validity windows, of operations records (docs/EVENTS.md).

An operations record may carry an **event**: a disc (``lat``, ``lon``, ``radius_m``) and a
window (``start``, ``end``). It becomes a set of ``event`` elements, one per (H3 cell,
time slot)::

    canonical = "r{res}:{cell}:{SLOT_HOURS}h{slot}"     e.g. "r7:871f1d489ffffff:6h81234"

- **cells**: at every resolution of `LADDER` from the coarsest (7) up to the one the radius
  calls for (`finest_level`: the finest whose average edge is at least the radius), every
  H3 cell that *intersects* the disc, not only those whose centre lies in it (`cover`);
- **slots**: every `SLOT_HOURS`-hour slot since the Unix epoch that the half-open window
  ``[start, end)`` touches.

Why two events whose discs intersect and whose windows overlap always share an element:
take a point p in both discs and an instant t in both windows. Let L be the coarser of the
two events' finest levels; both events cover level L. The cell of level L holding p
intersects both discs, so both emit it, crossed with the slot holding t. The cover is
found by flood fill from the centre's cell through `h3.grid_disk(cell, 1)`, keeping each
cell whose boundary (great-circle arcs between the vertices `h3.cell_to_boundary` gives,
which is what H3 cells are) comes within the radius (plus `_MARGIN_M`) of the centre: the
cells meeting a disc are connected, so none is missed, near the poles, across the
antimeridian and around pentagons alike.

Why events far apart never share one: a shared element is a cell at some level L that
meets both discs (within the margin), so the centres are at most
``r1 + r2 + CELL_DIAMETER_M[L] + 2 * _MARGIN_M`` apart. Every event covers level 7, so the
bound that holds for any two events is `false_positive_distance_m` with L = 7: the radii
plus 3.1 km. That is why the ladder starts at 7 and not coarser: a coarser first level
would make events tens of kilometres apart match. Windows a whole slot apart (a gap of
`SLOT_HOURS` hours or more) never share a slot.

Validity windows (``valid_from``, ``valid_until``) are not elements: they say when a
record may match (`read_window`). Times in all four columns are ISO 8601 dates or
date-times, UTC when they carry no offset; a date alone is the start of that day in
``start``/``valid_from`` and the end of that day in ``end``/``valid_until``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass

import h3

from node.data.identifiers import EVENT_COLUMNS, WINDOW_COLUMNS, Rejection, encode_element
from node.data.store import stored_time

__all__ = [
    "CELL_DIAMETER_M",
    "EARTH_RADIUS_M",
    "EVENT",
    "EVENT_COLUMNS",
    "LADDER",
    "MAX_RADIUS_M",
    "MAX_WINDOW",
    "MIN_RADIUS_M",
    "SLOT_HOURS",
    "WINDOW_COLUMNS",
    "Event",
    "Window",
    "cover",
    "event_elements",
    "false_positive_distance_m",
    "finest_level",
    "parse_instant",
    "read_event",
    "read_window",
    "slots",
]

EVENT = "event"
"""The element type of events."""

LADDER: tuple[int, ...] = (7, 8, 9, 10)
"""H3 resolutions an event may cover, coarsest first (protocol constant: part of elements)."""
SLOT_HOURS = 6
"""Length of a time slot (protocol constant: part of every event element)."""
_SLOT_SECONDS = SLOT_HOURS * 3600

MIN_RADIUS_M = 10.0
MAX_RADIUS_M = 50_000.0
MAX_WINDOW = dt.timedelta(days=31)

EARTH_RADIUS_M = 6_371_007.180918475
"""The sphere H3 works on (authalic radius), in metres."""
_MARGIN_M = 1.0
"""Cells this close to the disc count as meeting it: floating-point slack, never a miss."""

CELL_DIAMETER_M: Mapping[int, float] = {7: 3_100.0, 8: 1_172.0, 9: 443.0, 10: 168.0}
"""Largest distance between two vertices of one cell, in metres, rounded up (docs/EVENTS.md).

Measured over the centre child of every level-4 cell and its six neighbours (2 million
cells, the whole sphere, pentagons included): 3,096.4 m at level 7, 1,170.3 m at level 8;
levels 9 and 10 scale by sqrt(7) per level as H3's aperture does.
"""

_EDGE_M = {res: h3.average_hexagon_edge_length(res, "m") for res in LADDER}


# -- geometry ------------------------------------------------------------------------------------

_Vec = tuple[float, float, float]


def _vec(lat: float, lon: float) -> _Vec:
    la, lo = math.radians(lat), math.radians(lon)
    c = math.cos(la)
    return (c * math.cos(lo), c * math.sin(lo), math.sin(la))


def _cross(a: _Vec, b: _Vec) -> _Vec:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def _dot(a: _Vec, b: _Vec) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _angle(a: _Vec, b: _Vec) -> float:
    c = _cross(a, b)
    return math.atan2(math.sqrt(_dot(c, c)), _dot(a, b))


def _arc_distance(p: _Vec, a: _Vec, b: _Vec) -> float:
    """Angle from p to the shorter great-circle arc a-b."""
    n = _cross(a, b)
    norm = math.sqrt(_dot(n, n))
    if norm < 1e-15:
        return _angle(p, a)
    n = (n[0] / norm, n[1] / norm, n[2] / norm)
    s = _dot(p, n)
    q = (p[0] - s * n[0], p[1] - s * n[1], p[2] - s * n[2])  # p projected on the great circle
    if _dot(_cross(a, q), n) >= 0 and _dot(_cross(q, b), n) >= 0:
        return math.asin(min(1.0, abs(s)))
    return min(_angle(p, a), _angle(p, b))


def _boundary_angle(p: _Vec, cell: str) -> float:
    """Angle from p to the boundary of `cell`."""
    vs = [_vec(lat, lon) for lat, lon in h3.cell_to_boundary(cell)]
    return min(_arc_distance(p, vs[i - 1], vs[i]) for i in range(len(vs)))


def cover(lat: float, lon: float, radius_m: float, res: int) -> set[str]:
    """Every H3 cell of resolution `res` that meets the disc (centre lat/lon, radius in m)."""
    p = _vec(lat, lon)
    limit = (radius_m + _MARGIN_M) / EARTH_RADIUS_M
    start = h3.latlng_to_cell(lat, lon, res)
    found, seen, todo = {start}, {start}, [start]
    while todo:
        for cell in h3.grid_disk(todo.pop(), 1):
            if cell not in seen:
                seen.add(cell)
                if _boundary_angle(p, cell) <= limit:
                    found.add(cell)
                    todo.append(cell)
    return found


def finest_level(radius_m: float) -> int:
    """The finest resolution of `LADDER` whose average edge is at least the radius."""
    level = LADDER[0]
    for res in LADDER:
        if radius_m <= _EDGE_M[res]:
            level = res
    return level


def false_positive_distance_m(r1: float, r2: float, level: int = LADDER[0]) -> float:
    """How far apart two events' centres can be and still share an element at `level`."""
    return r1 + r2 + CELL_DIAMETER_M[level] + 2 * _MARGIN_M


def slots(start: dt.datetime, end: dt.datetime) -> range:
    """The slot numbers the half-open window [start, end) touches."""
    first = math.floor(start.timestamp() / _SLOT_SECONDS)
    last = math.ceil(end.timestamp() / _SLOT_SECONDS) - 1
    return range(first, max(first, last) + 1)


# -- events --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A place (disc) and a window [start, end) in UTC."""

    lat: float
    lon: float
    radius_m: float
    start: dt.datetime
    end: dt.datetime

    def cells(self) -> list[tuple[int, str]]:
        """(resolution, cell) of every cell the event covers, coarsest level first."""
        finest = finest_level(self.radius_m)
        return [
            (res, cell)
            for res in LADDER
            if res <= finest
            for cell in sorted(cover(self.lat, self.lon, self.radius_m, res))
        ]

    def canonical_values(self) -> list[str]:
        """The canonical value of every element of the event."""
        cells = self.cells()
        return [
            f"r{res}:{cell}:{SLOT_HOURS}h{slot}"
            for slot in slots(self.start, self.end)
            for res, cell in cells
        ]


def event_elements(event: Event) -> list[tuple[str, bytes]]:
    """The (type, element) pairs of an event."""
    return [(EVENT, encode_element(EVENT, value)) for value in event.canonical_values()]


class _Bad(Exception):
    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column, self.reason = column, reason


def _text(raw: object) -> str:
    if raw is None:
        return ""
    if isinstance(raw, bool):
        return repr(raw)
    return str(raw).strip()


def _number(column: str, raw: object, what: str, low: float, high: float, unit: str) -> float:
    text = _text(raw)
    try:
        value = float(text)
    except ValueError:
        raise _Bad(column, f"{what} {text!r} is not a number: write e.g. {low + 1:g}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise _Bad(column, f"{what} {text} is out of range: it must be {low:g} to {high:g}{unit}")
    return value


def parse_instant(column: str, raw: object, *, end: bool) -> dt.datetime:
    """An ISO 8601 date or date-time as UTC; a date alone is its day's start (or end if `end`)."""
    text = _text(raw)
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        pass
    else:
        start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        return start + dt.timedelta(days=1) if end else start
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _Bad(
            column,
            f"{column} {text!r} is not an ISO 8601 date or date-time: write e.g. 2026-03-01 or "
            "2026-03-01T18:30 (UTC) or 2026-03-01T18:30+01:00",
        ) from None
    if when.tzinfo is None:
        return when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


def read_event(row: Mapping[str, object]) -> tuple[Event | None, list[Rejection]]:
    """The event of an input row (None if it has none) and what was rejected, by column."""
    given = [c for c in EVENT_COLUMNS if _text(row.get(c))]
    if not given:
        return None, []
    missing = [c for c in EVENT_COLUMNS if c not in given]
    if missing:
        return None, [
            Rejection(
                missing[0],
                f"an event needs all of {', '.join(EVENT_COLUMNS)}; missing {', '.join(missing)}",
            )
        ]
    problems: list[Rejection] = []
    values: dict[str, object] = {}
    readers = {
        "lat": lambda raw: _number("lat", raw, "latitude", -90, 90, " degrees"),
        "lon": lambda raw: _number("lon", raw, "longitude", -180, 180, " degrees"),
        "radius_m": lambda raw: _number(
            "radius_m", raw, "radius", MIN_RADIUS_M, MAX_RADIUS_M, " metres (10 m to 50 km)"
        ),
        "start": lambda raw: parse_instant("start", raw, end=False),
        "end": lambda raw: parse_instant("end", raw, end=True),
    }
    for column, read in readers.items():
        try:
            values[column] = read(row[column])
        except _Bad as bad:
            problems.append(Rejection(bad.column, bad.reason))
    if problems:
        return None, problems
    event = Event(**values)  # type: ignore[arg-type]
    if event.end <= event.start:
        return None, [
            Rejection(
                "end",
                f"event end {_text(row['end'])!r} is not after its start "
                f"{_text(row['start'])!r} (as UTC: {stored_time(event.end)}, "
                f"{stored_time(event.start)})",
            )
        ]
    if event.end - event.start > MAX_WINDOW:
        days = (event.end - event.start) / dt.timedelta(days=1)
        return None, [
            Rejection(
                "end",
                f"event lasts {days:.1f} days, more than {MAX_WINDOW.days}: split it into "
                "several records",
            )
        ]
    return event, []


@dataclass(frozen=True)
class Window:
    """A record's validity window as stored: ISO 8601 UTC text, None when open."""

    valid_from: str | None
    valid_until: str | None

    def __contains__(self, now: str) -> bool:
        return (self.valid_from is None or self.valid_from <= now) and (
            self.valid_until is None or now < self.valid_until
        )


def read_window(row: Mapping[str, object]) -> tuple[Window, list[Rejection]]:
    """The validity window of an input row and what was rejected, by column."""
    bounds: dict[str, dt.datetime] = {}
    problems: list[Rejection] = []
    for column in WINDOW_COLUMNS:
        if _text(row.get(column)):
            try:
                bounds[column] = parse_instant(
                    column, row[column], end=column == "valid_until"
                ).replace(microsecond=0)
            except _Bad as bad:
                problems.append(Rejection(bad.column, bad.reason))
    since, until = bounds.get("valid_from"), bounds.get("valid_until")
    if since is not None and until is not None and until <= since:
        problems.append(
            Rejection(
                "valid_until",
                f"valid_until {_text(row['valid_until'])!r} is not after valid_from "
                f"{_text(row['valid_from'])!r} (as UTC: {stored_time(until)}, "
                f"{stored_time(since)})",
            )
        )
    if problems:
        return Window(None, None), problems
    return Window(
        None if since is None else stored_time(since), None if until is None else stored_time(until)
    ), []
