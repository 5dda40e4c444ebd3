"""Events and validity windows (node.data.events): no false negatives and bounded false
positives anywhere on Earth, every validation error, ingest of operations lists, sessions
that leave records outside their window out, and retention that erases expired windows."""

import datetime as dt
import json
import math
from pathlib import Path

import h3
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from crypto.batch import BatchRunner
from node.data import audit
from node.data.events import (
    CELL_DIAMETER_M,
    EARTH_RADIUS_M,
    LADDER,
    MAX_RADIUS_M,
    MIN_RADIUS_M,
    SLOT_HOURS,
    Event,
    cover,
    event_elements,
    false_positive_distance_m,
    finest_level,
    read_event,
    read_window,
)
from node.data.identifiers import check_kind_columns
from node.data.ingest import ingest_file
from node.data.store import Store
from node.errors import InvalidInput
from node.sessions.erasure import expire_records
from node.setup.config import NodeConfig
from node.setup.context import NodeContext

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
SLOT = dt.timedelta(hours=SLOT_HOURS)
PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def destination(lat: float, lon: float, bearing: float, metres: float) -> tuple[float, float]:
    """The point `metres` from (lat, lon) along `bearing` (radians), on H3's sphere."""
    d = metres / EARTH_RADIUS_M
    la, lo = math.radians(lat), math.radians(lon)
    la2 = math.asin(
        max(
            -1.0,
            min(1.0, math.sin(la) * math.cos(d) + math.cos(la) * math.sin(d) * math.cos(bearing)),
        )
    )
    lo2 = lo + math.atan2(
        math.sin(bearing) * math.sin(d) * math.cos(la), math.cos(d) - math.sin(la) * math.sin(la2)
    )
    lon2 = (math.degrees(lo2) + 540.0) % 360.0 - 180.0
    return math.degrees(la2), lon2


def distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return h3.great_circle_distance(a, b, unit="m")


PENTAGONS = sorted({h3.cell_to_latlng(p) for res in LADDER for p in h3.get_pentagons(res)})
uniform = st.builds(
    lambda z, lon: (math.degrees(math.asin(z)), lon),
    st.floats(-1, 1),
    st.floats(-180, 180),
)
polar = st.tuples(st.floats(84, 90) | st.floats(-90, -84), st.floats(-180, 180))
antimeridian = st.tuples(st.floats(-80, 80), st.floats(179, 180) | st.floats(-180, -179))
pentagon = st.sampled_from(PENTAGONS)
centres = uniform | polar | antimeridian | pentagon
radii = st.floats(math.log(MIN_RADIUS_M), math.log(MAX_RADIUS_M)).map(
    lambda x: min(MAX_RADIUS_M, max(MIN_RADIUS_M, math.exp(x)))
)
bearings = st.floats(0, 2 * math.pi)
hours = st.floats(0.02, 60)


def values(lat: float, lon: float, r: float, start: dt.datetime, length_h: float) -> set[str]:
    event = Event(lat, lon, r, start, start + dt.timedelta(hours=length_h))
    return set(event.canonical_values())


@PROPERTY
@given(centres, radii, radii, bearings, st.floats(0, 0.999), hours, hours, st.floats(0.001, 0.999))
def test_intersecting_discs_with_overlapping_windows_always_share(
    centre, r1, r2, bearing, along, h1, h2, offset
) -> None:
    other = destination(*centre, bearing, along * (r1 + r2))
    assume(distance(centre, other) <= r1 + r2)
    start2 = T0 + dt.timedelta(hours=(offset * (h1 + h2)) - h2)  # [start2, +h2) meets [T0, +h1)
    assume(start2 < T0 + dt.timedelta(hours=h1) and start2 + dt.timedelta(hours=h2) > T0)
    assert values(*centre, r1, T0, h1) & values(*other, r2, start2, h2)


@PROPERTY
@given(centres, radii, radii, bearings, st.floats(1.0001, 3), hours, hours)
def test_events_beyond_the_false_positive_distance_never_share(
    centre, r1, r2, bearing, factor, h1, h2
) -> None:
    far = false_positive_distance_m(r1, r2)
    assume(far * factor < math.pi * EARTH_RADIUS_M * 0.9)
    other = destination(*centre, bearing, far * factor)
    assume(distance(centre, other) > far)
    assert not values(*centre, r1, T0, h1) & values(*other, r2, T0, h2)  # same window


@PROPERTY
@given(centres, radii, radii, hours, hours, st.floats(0, 48))
def test_windows_a_slot_apart_never_share(centre, r1, r2, h1, h2, gap_h) -> None:
    later = T0 + dt.timedelta(hours=h1) + SLOT + dt.timedelta(hours=gap_h)
    assert not values(*centre, r1, T0, h1) & values(*centre, r2, later, h2)  # same place


@PROPERTY
@given(
    centres,
    radii.flatmap(
        lambda r: st.tuples(
            st.just(r), st.sampled_from(LADDER[: LADDER.index(finest_level(r)) + 1])
        )
    ),
)
def test_cover_holds_every_cell_the_disc_reaches(centre, radius_and_level) -> None:
    r, res = radius_and_level
    cells = cover(*centre, r, res)
    assert h3.latlng_to_cell(*centre, res) in cells
    for i in range(16):  # points on and just inside the rim lie in covered cells
        rim = destination(*centre, 2 * math.pi * i / 16, r * 0.999)
        assert h3.latlng_to_cell(*rim, res) in cells


def test_the_ladder_and_the_stated_bound() -> None:
    assert finest_level(10) == 10 and finest_level(400) == 8 and finest_level(50_000) == 7
    assert false_positive_distance_m(200, 200) == pytest.approx(3_502.0)
    a = Event(52.37, 4.89, 1_000, T0, T0 + dt.timedelta(hours=12))
    b = Event(52.37, 4.89, 50_000, T0, T0 + dt.timedelta(days=31))
    counts = len(event_elements(a)), len(event_elements(b))
    assert 4 <= counts[0] <= 30 and 150_000 <= counts[1] <= 300_000, counts  # docs/EVENTS.md
    assert max(CELL_DIAMETER_M.values()) == CELL_DIAMETER_M[LADDER[0]]


def test_a_small_event_meets_a_large_one_only_at_coarse_levels() -> None:
    small = Event(0.0, 0.0, 10, T0, T0 + dt.timedelta(hours=1))
    large = Event(0.3, 0.0, 40_000, T0, T0 + dt.timedelta(hours=1))  # about 33 km north
    shared = set(small.canonical_values()) & set(large.canonical_values())
    assert shared and {v.split(":")[0] for v in shared} == {"r7"}


# -- validation ------------------------------------------------------------------------------------

EVENT = {
    "lat": "52.37",
    "lon": "4.89",
    "radius_m": "1000",
    "start": "2026-03-01T18:00",
    "end": "2026-03-02T06:00",
}


@pytest.mark.parametrize(
    ("change", "column", "reason"),
    [
        ({"lat": "91"}, "lat", "latitude 91 is out of range: it must be -90 to 90 degrees"),
        ({"lat": "north"}, "lat", "latitude 'north' is not a number"),
        ({"lon": "-180.5"}, "lon", "longitude -180.5 is out of range"),
        ({"lon": "nan"}, "lon", "longitude nan is out of range"),
        ({"radius_m": "9"}, "radius_m", "radius 9 is out of range: it must be 10 to 50000 metres"),
        ({"radius_m": "50001"}, "radius_m", "(10 m to 50 km)"),
        ({"radius_m": "1km"}, "radius_m", "radius '1km' is not a number"),
        ({"start": "01/03/2026"}, "start", "start '01/03/2026' is not an ISO 8601 date"),
        ({"end": "tomorrow"}, "end", "end 'tomorrow' is not an ISO 8601 date"),
        ({"end": "2026-03-01T17:00"}, "end", "event end '2026-03-01T17:00' is not after its start"),
        ({"end": "2026-03-01T18:00"}, "end", "is not after its start"),
        ({"end": "2026-04-01T18:01"}, "end", "more than 31: split it into several records"),
        ({"radius_m": ""}, "radius_m", "an event needs all of lat, lon, radius_m, start, end; "
         "missing radius_m"),
        ({"start": "", "end": None}, "start", "missing start, end"),
    ],
)  # fmt: skip
def test_every_event_error_names_its_column(change, column, reason) -> None:
    event, problems = read_event({**EVENT, **change})
    assert event is None
    assert [p.column for p in problems] == [column]
    assert reason in problems[0].reason


def test_event_times_are_utc_and_dates_are_whole_days() -> None:
    event, _ = read_event({**EVENT, "start": "2026-03-01T19:00+01:00", "end": "2026-03-01"})
    assert event is not None and event.start == dt.datetime(2026, 3, 1, 18, tzinfo=dt.UTC)
    assert event.end == dt.datetime(2026, 3, 2, tzinfo=dt.UTC)  # the end of that day
    event, _ = read_event({**EVENT, "start": "2026-03-01", "end": "2026-03-31"})
    assert event is not None and event.end - event.start == dt.timedelta(days=31)
    assert read_event({"ref": "x"}) == (None, [])
    event, _ = read_event(
        {"lat": 52.37, "lon": 4.89, "radius_m": 10, **{k: EVENT[k] for k in ("start", "end")}}
    )  # JSON numbers
    assert event is not None and event.lat == 52.37


def test_window_errors_and_forms() -> None:
    window, problems = read_window({"valid_from": "2026-03-01", "valid_until": "2026-03-01"})
    assert problems == [] and window.valid_until == "2026-03-02T00:00:00+00:00"
    assert window.valid_from == "2026-03-01T00:00:00+00:00"
    _, problems = read_window({"valid_from": "2026-03-02", "valid_until": "2026-03-01T12:00"})
    assert [p.column for p in problems] == ["valid_until"]
    assert "valid_until '2026-03-01T12:00' is not after valid_from '2026-03-02'" in (
        problems[0].reason
    )
    _, problems = read_window({"valid_from": "soon"})
    assert [p.column for p in problems] == ["valid_from"]
    assert "not an ISO 8601 date or date-time" in problems[0].reason
    window, _ = read_window({"valid_until": "2026-03-01T12:00-05:00"})
    assert (window.valid_from, window.valid_until) == (None, "2026-03-01T17:00:00+00:00")
    assert "2026-03-01T16:59:59+00:00" in window and "2026-03-01T17:00:00+00:00" not in window


def test_only_operations_lists_take_the_columns() -> None:
    check_kind_columns(["ref", "valid_from", "lat"], "operations")
    with pytest.raises(InvalidInput, match=r"'valid_from', 'lat' are only for operations lists"):
        check_kind_columns(["ref", "valid_from", "lat", "phone"], "watchlist")


# -- ingest, sessions, retention -----------------------------------------------------------------

OPERATIONS = """ref,label,phone,valid_from,valid_until,lat,lon,radius_m,start,end
E1,Op A,,,,52.37,4.89,1000,2026-03-01T06:00,2026-03-01T18:00
E2,,+31 6 1234 5678,2026-03-01,2026-03-10,,,,,
E3,,+31 6 1234 5679,2026-04-01,,,,,,
E4,,,,,52.37,4.89,5,2026-03-01,2026-03-02
E5,,+31 6 1234 5670,2026-03-02,2026-03-01,,,,,
E6,,+31 6 1234 5671,,,52.37,,,,
"""


def ingest(node: NodeConfig, path: Path, name: str, **options: object):  # type: ignore[no-untyped-def]
    with Store.open(node.store_path) as store:
        return ingest_file(
            store,
            path,
            name,
            node.canon_context(),
            audit.load_signing_key(node.audit_key),
            operator="test",
            **options,  # type: ignore[arg-type]
        )


def test_operations_ingest_stores_events_and_windows(node: NodeConfig, tmp_path: Path) -> None:
    path = tmp_path / "ops.csv"
    path.write_text(OPERATIONS)
    result = ingest(node, path, "ops", kind="operations")
    assert [(r.line, r.column) for r in result.rejected] == [
        (5, "radius_m"),
        (6, "valid_until"),
        (7, "lon"),
    ]
    assert "missing lon, radius_m, start, end" in result.rejected[2].reason
    event, _ = read_event(
        dict(
            zip(
                OPERATIONS.splitlines()[0].split(","),
                OPERATIONS.splitlines()[1].split(","),
                strict=True,
            )
        )
    )
    assert event is not None
    with Store.open(node.store_path) as store:
        rows = dict(
            (
                (ref, (since, until))
                for ref, since, until in store.conn.execute(
                    "SELECT ref, valid_from, valid_until FROM records"
                )
            )
        )
        assert rows == {
            "E1": (None, None),
            "E2": ("2026-03-01T00:00:00+00:00", "2026-03-11T00:00:00+00:00"),
            "E3": ("2026-04-01T00:00:00+00:00", None),
            "E6": (None, None),  # its phone stays; its half-given event is rejected
        }
        stored = {
            bytes(e)
            for (e,) in store.conn.execute(
                "SELECT element FROM elements e JOIN records r ON e.record_id = r.id "
                "WHERE r.ref = 'E1'"
            )
        }
        assert stored == {e for _, e in event_elements(event)}

        # Sessions leave out records outside their window, judged at the time given.
        def refs(now: str) -> set[str]:
            ids = store.list_points("ops", "x25519-blake3", now).element_ids.tolist()
            return {row[0] for row in store.element_rows(ids) if row}

        assert refs("2026-02-28T00:00:00+00:00") == {"E1", "E6"}
        assert refs("2026-03-05T00:00:00+00:00") == {"E1", "E2", "E6"}
        assert refs("2026-04-02T00:00:00+00:00") == {"E1", "E3", "E6"}
        points = store.list_points("ops", "x25519-blake3", "2026-02-28T00:00:00+00:00")
        assert points.changes_at == "2026-03-01T00:00:00+00:00"  # when E2 opens: reload then

    # Retention erases the records whose window ended, audited like other expiries.
    context = NodeContext.load(node.node_dir, BatchRunner())
    context.now = lambda: dt.datetime(2026, 3, 12, tzinfo=dt.UTC)
    (done,) = expire_records(context, context.store())
    assert (done.list, done.erased.records) == ("ops", 1)
    assert expire_records(context, context.store()) == []  # idempotent
    with Store.open(node.store_path) as store:
        assert {r for (r,) in store.conn.execute("SELECT ref FROM records")} == {"E1", "E3", "E6"}
        (entry,) = [e for e in audit.entries(store.conn) if e.event == "records.expired"]
    assert entry.fields == {
        "operator": "node",
        "list": "ops",
        "valid_until_before": "2026-03-12T00:00:00+00:00",
        "records": 1,
        "elements": 1,
        "hits": 0,
    }


def test_a_watchlist_with_operations_columns_is_refused(node: NodeConfig, tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text("ref,phone,valid_from,lat\nW1,+31 6 1234 5678,2026-03-01,\n")
    with pytest.raises(InvalidInput, match=r"w.csv: column\(s\) 'valid_from', 'lat' are only"):
        ingest(node, path, "w")
    jsonl = tmp_path / "w.jsonl"
    jsonl.write_text(
        json.dumps({"ref": "W1", "phone": "+31 6 1234 5678"})
        + "\n"
        + json.dumps({"ref": "W2", "radius_m": 10})
        + "\n"
    )
    with pytest.raises(InvalidInput, match=r"w.jsonl, line 2: column\(s\) 'radius_m'"):
        ingest(node, jsonl, "w")
    with Store.open(node.store_path) as store:
        assert store.lists() == []
