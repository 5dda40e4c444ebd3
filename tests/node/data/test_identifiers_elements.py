"""Tests for weaker document elements, the column guide and the canonical-form version."""

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from node.data.events import event_elements, read_event, read_window
from node.data.identifiers import (
    CANON_VERSION,
    COLUMN_GUIDE,
    ELEMENT_PREFIX,
    ELEMENT_TYPES,
    EVENT_COLUMNS,
    ICAO_COUNTRY_CODES,
    IDENTIFIER_TYPES,
    PERSON,
    WEAKER_ELEMENTS,
    WINDOW_COLUMNS,
    CanonContext,
    canonical_elements,
    encode_element,
    known_columns,
    label_problem,
)
from node.errors import InvalidInput

CTX = CanonContext(region="GB", today=dt.date(2025, 6, 1))


def values(row: dict[str, object]) -> list[tuple[str, str]]:
    elements, rejections = canonical_elements({"ref": "r", **row}, CTX)
    assert rejections == []
    return [(t, e.removeprefix(ELEMENT_PREFIX).split(b"\x00", 1)[1].decode()) for t, e in elements]


# -- weaker elements -------------------------------------------------------------------------------


def test_weaker_elements_back_up_stronger_ones() -> None:
    assert dict(WEAKER_ELEMENTS) == {
        "person_year": "person",
        "passport_number": "passport",
        "national_id_number": "national_id",
    }
    assert set(WEAKER_ELEMENTS) | set(WEAKER_ELEMENTS.values()) <= ELEMENT_TYPES


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            {"passport": "C01X00T47", "passport_country": "D"},
            [("passport", "DEU:C01X00T47"), ("passport_number", "C01X00T47")],
        ),
        (
            {"passport": "nl:ab 1234567"},
            [("passport", "NLD:AB1234567"), ("passport_number", "AB1234567")],
        ),
        ({"passport": "c01x00t47"}, [("passport_number", "C01X00T47")]),
        (
            {"national_id": "ESP:99999999-R"},
            [("national_id", "ESP:99999999R"), ("national_id_number", "99999999R")],
        ),
        ({"national_id": "99999999-R"}, [("national_id_number", "99999999R")]),
    ],
)
def test_documents_give_a_weaker_number_element(
    row: dict[str, object], expected: list[tuple[str, str]]
) -> None:
    assert values(row) == expected


def test_passport_with_and_without_country_meet_on_the_number() -> None:
    with_country = dict(values({"passport": "C01X00T47", "passport_country": "DEU"}))
    without = dict(values({"passport": "C01 X00 T47"}))
    assert set(with_country.items()) & set(without.items()) == {("passport_number", "C01X00T47")}
    # Two countries, one number: only the weaker element is shared.
    british = dict(values({"passport": "GBR:123456789"}))
    overseas = dict(values({"passport": "GBD:123456789"}))
    assert set(british.items()) & set(overseas.items()) == {("passport_number", "123456789")}


def test_element_bytes_are_unchanged() -> None:
    assert ELEMENT_PREFIX == b"blindmatch/v1\x00"
    elements, _ = canonical_elements({"ref": "r", "passport": "DEU:C01X00T47"}, CTX)
    assert elements == [
        ("passport", b"blindmatch/v1\x00passport\x00DEU:C01X00T47"),
        ("passport_number", b"blindmatch/v1\x00passport_number\x00C01X00T47"),
    ]
    assert encode_element("national_id_number", "X1") == (
        b"blindmatch/v1\x00national_id_number\x00X1"
    )


@pytest.mark.parametrize("column", ["passport_number", "national_id_number"])
def test_weaker_types_are_not_input_columns(column: str) -> None:
    assert column not in known_columns()
    document = WEAKER_ELEMENTS[column]
    with pytest.raises(InvalidInput, match=f"write the number in the column '{document}'"):
        canonical_elements({"ref": "r", column: "C01X00T47"}, CTX)


def test_canon_version() -> None:
    assert CANON_VERSION == 2


# -- column guide ----------------------------------------------------------------------------------


def test_guide_covers_every_column_once() -> None:
    columns = [entry.column for entry in COLUMN_GUIDE]
    assert len(columns) == len(set(columns))
    assert set(columns) == known_columns()
    assert columns[:6] == ["ref", "label", "name", "dob", "passport", "passport_country"]


def test_guide_entries_are_frozen_and_say_something() -> None:
    for entry in COLUMN_GUIDE:
        assert entry.format and entry.example
        assert "\n" not in entry.format
    with pytest.raises(dataclasses.FrozenInstanceError):
        COLUMN_GUIDE[0].example = "x"  # type: ignore[misc]


@pytest.mark.parametrize("entry", COLUMN_GUIDE, ids=[e.column for e in COLUMN_GUIDE])
def test_each_guide_example_is_valid(entry) -> None:
    if entry.column in IDENTIFIER_TYPES:
        IDENTIFIER_TYPES[entry.column].canonical(entry.example, CTX)
    elif entry.column == "name":
        PERSON.canonical_name(entry.example)
    elif entry.column == "dob":
        PERSON.canonical_dob(entry.example, CTX)
    elif entry.column == "passport_country":
        assert values({"passport": "C01X00T47", "passport_country": entry.example})[0][0] == (
            "passport"
        )
    elif entry.column == "label":
        assert label_problem(entry.example) is None
    elif entry.column in WINDOW_COLUMNS:
        window, problems = read_window({entry.column: entry.example})
        assert problems == [] and getattr(window, entry.column) is not None
    elif entry.column in EVENT_COLUMNS:
        row = {e.column: e.example for e in COLUMN_GUIDE if e.column in EVENT_COLUMNS}
        event, problems = read_event({**row, entry.column: entry.example})
        assert problems == [] and event is not None
    else:
        assert entry.column == "ref" and entry.example.strip()


def test_guide_examples_make_one_valid_row() -> None:
    row = {entry.column: entry.example for entry in COLUMN_GUIDE}
    elements, rejections = canonical_elements(row, CTX)
    assert rejections == []
    event, problems = read_event(row)
    assert problems == [] and event is not None and read_window(row)[1] == []
    types = [t for t, _ in elements]
    assert set(types) == ELEMENT_TYPES - {"event"}
    assert len(types) == len(ELEMENT_TYPES) - 1
    assert {t for t, _ in event_elements(event)} == {"event"}


def test_dob_format_mentions_the_slashed_rule() -> None:
    (dob,) = [entry for entry in COLUMN_GUIDE if entry.column == "dob"]
    assert "DD/MM/YYYY or MM/DD/YYYY" in dob.format and "date_order" in dob.format


# -- docs/IDENTIFIERS.md ---------------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[3] / "docs" / "IDENTIFIERS.md"


def test_doc_names_every_column_element_and_country_code() -> None:
    text = DOC.read_text()
    for entry in COLUMN_GUIDE:
        assert f"| `{entry.column}` |" in text, entry.column
    for element_type in ELEMENT_TYPES:
        assert f"`{element_type}`" in text, element_type
    for code, meaning in ICAO_COUNTRY_CODES.items():
        assert f"| {code} | {meaning} |" in text, code
    assert f"now **{CANON_VERSION}**" in text
    assert "blindmatch config set NODE_DIR date_order DMY" in text
