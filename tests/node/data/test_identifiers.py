"""Tests for node.identifiers: canonical forms, rejections, elements and rows."""

import datetime as dt
import pickle
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import iban as stdnum_iban
from stdnum import imo as stdnum_imo
from stdnum import iso6346 as stdnum_iso6346
from stdnum.iso7064 import mod_97_10

from node.data.identifiers import (
    ELEMENT_TYPES,
    IDENTIFIER_TYPES,
    PASSPORT,
    PERSON,
    CanonContext,
    Rejection,
    canonical_elements,
    check_columns,
    encode_element,
    known_columns,
)
from node.errors import ConfigError, InvalidIdentifier, InvalidInput, NodeError

CTX = CanonContext(region="GB", today=dt.date(2025, 6, 1))


def canon(type: str, value: str, context: CanonContext = CTX) -> str:
    return IDENTIFIER_TYPES[type].canonical(value, context)


def reason(type: str, value: str, context: CanonContext = CTX) -> str:
    with pytest.raises(InvalidIdentifier) as info:
        canon(type, value, context)
    assert info.value.type == type
    return info.value.reason


# -- valid values in the notations people write ---------------------------------------------------

EQUIVALENT = [
    ("passport", ["C01X00T47", "c01x00t47", "C01 X00 T47", "C01-X00-T47"], "C01X00T47"),
    (
        "passport",
        ["DEU:C01X00T47", "deu:c01x00t47", "D:C01X00T47", "DEU: C01 X00 T47"],
        "DEU:C01X00T47",
    ),
    (
        "passport",
        ["NLD:AB1234567", "NL:AB1234567", "nld:ab1234567", "nl:AB 123 4567"],
        "NLD:AB1234567",
    ),
    (
        "passport",
        ["GBR:123456789", "GB:123456789", "UK:123456789", "uk:123 456 789"],
        "GBR:123456789",
    ),
    ("passport", ["GBD:123456789", "gbd:123456789"], "GBD:123456789"),
    ("national_id", ["ESP:99999999R", "esp:99999999-r", "ESP:99.999.999 R"], "ESP:99999999R"),
    ("national_id", ["RKS:1234567890", "XK:1234567890", "rks:12345 67890"], "RKS:1234567890"),
    ("national_id", ["AB 12 34 56 C", "ab123456c"], "AB123456C"),
    (
        "phone",
        [
            "+44 (0)20 7946 0958",
            "020 7946 0958",
            "0044 20 7946 0958",
            "+442079460958",
            "+44-20-7946-0958",
            "(020) 7946 0958",
        ],
        "+442079460958",
    ),
    ("phone", ["+49 30 901820", "+49 (0)30 901820", "0049 30 901820"], "+4930901820"),
    (
        "email",
        ["J.Smith@Example.ORG", "  j.smith@example.org ", "J.SMITH@EXAMPLE.ORG"],
        "j.smith@example.org",
    ),
    (
        "iban",
        [
            "GB82 WEST 1234 5698 7654 32",
            "gb82west12345698765432",
            "GB82-WEST-1234-5698-7654-32",
            "GB82.WEST.1234.5698.7654.32",
        ],
        "GB82WEST12345698765432",
    ),
    ("iban", ["DE89 3704 0044 0532 0130 00", "DE89370400440532013000"], "DE89370400440532013000"),
    (
        "imo",
        ["IMO 9319466", "9319466", "imo9319466", "IMO-9319466", "IMO: 9319466", "931 9466"],
        "9319466",
    ),
    (
        "container",
        [
            "CSQU3054383",
            "CSQU 305438 3",
            "csqu 305438-3",
            "CSQU/305438/3",
            "CSQU.305438.3",
            "CSQU 305 438 3",
        ],
        "CSQU3054383",
    ),
    ("vin", ["1M8GDM9AXKP042788", "1m8gdm9axkp042788", "1M8 GDM9AX KP042788"], "1M8GDM9AXKP042788"),
    ("vin", ["11111111111111111"], "11111111111111111"),
    # European VIN: position 9 is not a check digit and is not verified.
    ("vin", ["WVWZZZ1JZ3W386752", "wvwzzz1jz3w386752"], "WVWZZZ1JZ3W386752"),
    (
        "lei",
        ["213800KUD8LAJWSQ9D15", "2138 00KU D8LA JWSQ 9D15", "213800kud8lajwsq9d15"],
        "213800KUD8LAJWSQ9D15",
    ),
    (
        "company",
        [
            "Acme Trading Ltd|GBR",
            "ACME TRADING LIMITED|gbr",
            "Acme Trading Co., Ltd.|GBR",
            "acme-trading|GBR",
            "Acme Trading|GBR",
        ],
        "acme trading|GBR",
    ),
    (
        "company",
        ["Société Générale S.A.|FRA", "SOCIETE GENERALE SA|FRA", "Societe Generale|fra"],
        "societe generale|FRA",
    ),
    ("company", ["Müller GmbH & Co. KG|DEU", "Muller|D", "MULLER GMBH|de"], "muller|DEU"),
    ("company", ["Acme Trading Ltd|GB", "Acme Trading|UK"], "acme trading|GBR"),
    ("company", ["AG|CHE"], "ag|CHE"),  # a legal form alone is kept: it is the only token
    ("plate", ["D:B-MW 1234", "DEU:BMW1234", "deu:b mw 1234", "DEU:B-MW-1234"], "DEU:BMW1234"),
    ("plate", ["DEU:TÖL-AB 12", "deu:töl ab 12"], "DEU:TÖLAB12"),
    ("plate", ["NL:AB-123-C", "NLD:AB123C", "nld:ab 123 c"], "NLD:AB123C"),
    ("plate", ["EL:ΙΚΒ-1234", "GRC:ΙΚΒ1234"], "GRC:ΙΚΒ1234"),
    ("awb", ["176-12345675", "17612345675", "176 1234 5675", "176-1234 5675"], "17612345675"),
    ("bol", ["MAEU 123456789", "maeu-123456789", "MAEU123456789"], "MAEU123456789"),
    ("firearm", ["Glock|ABC123", "GLOCK|abc-123", "glock | ABC 123"], "GLOCK|ABC123"),
    ("firearm", ["Heckler & Koch|HK-0001", "HECKLER KOCH|hk0001"], "HECKLERKOCH|HK0001"),
    ("firearm", ["Česká zbrojovka|A123", "Ceska Zbrojovka|a123"], "CESKAZBROJOVKA|A123"),
    ("cites_permit", ["22GB001234/01", "22gb001234-01", "22 GB 001234 01"], "22GB00123401"),
    ("case_ref", ["OP-2024/0173", "op 2024 0173", "OP_2024_0173"], "OP20240173"),
]


@pytest.mark.parametrize(
    ("type", "value", "expected"),
    [(t, v, e) for t, values, e in EQUIVALENT for v in values],
)
def test_notations_give_one_canonical_form(type: str, value: str, expected: str) -> None:
    assert canon(type, value) == expected


@pytest.mark.parametrize("identifier", IDENTIFIER_TYPES.values(), ids=IDENTIFIER_TYPES.keys())
def test_each_example_is_valid_and_idempotent(identifier) -> None:
    once = identifier.canonical(identifier.example, CTX)
    assert identifier.canonical(once, CTX) == once


def test_registry_covers_design_table() -> None:
    assert set(IDENTIFIER_TYPES) == {
        "passport", "national_id", "phone", "email", "iban", "imo", "container", "vin", "lei",
        "company", "plate", "awb", "bol", "firearm", "cites_permit", "case_ref",
    }  # fmt: skip
    weaker = {"person_year", "passport_number", "national_id_number"}
    assert set(IDENTIFIER_TYPES) | {"person", "event"} | weaker == ELEMENT_TYPES


# -- invalid values and what the message says ----------------------------------------------------

INVALID = [
    # passport, national_id
    ("passport", "AB12", "must have 5-20 letters or digits, got 4"),
    ("passport", "A" * 21, "got 21"),
    ("passport", "AB#12345", "found '#'"),
    ("passport", "ÄB123456", "found 'Ä'"),
    ("passport", "GX:123456789", "'GX' is not an ISO 3166 alpha-2 code"),
    ("passport", "GBRX:123456789", "'GBRX' is not a country code: write ISO 3166 alpha-3"),
    ("passport", "ABC:123456789", "'ABC' is neither an ISO 3166 nor an ICAO 9303 code"),
    ("passport", "GER:C01X00T47", "did you mean DEU (Germany)?"),
    ("national_id", ":12345678", "country is empty"),
    # phone
    ("phone", "020 7946 095", "not a valid number for +44 (GB)"),
    ("phone", "+44 20 7946 0958 1234 5678", "too long"),
    ("phone", "+999 1234567", "unknown country calling code"),
    ("phone", "call me", "is not a phone number"),
    # email
    ("email", "john.smith", "exactly one '@', found 0"),
    ("email", "a@b@example.org", "exactly one '@', found 2"),
    ("email", "@example.org", "nothing before the '@'"),
    ("email", "john@localhost", "dotted name"),
    ("email", "john@example..org", "dotted name"),
    ("email", "john smith@example.org", "contains ' '"),
    ("email", "<john@example.org>", "contains '<'"),
    ("email", "a@example.org; b@example.org", "contains ';'"),
    # iban
    ("iban", "GB83 WEST 1234 5698 7654 32", "IBAN check digits do not verify"),
    ("iban", "GB82 WEST 1234 5698 7654 33", "IBAN check digits do not verify"),
    ("iban", "WEST12345698765432", "must start with a two-letter country code"),
    ("iban", "GB82 WEST 1234 5698 7654 3!", "found '!'"),
    ("iban", "GB88 WEST 1234 5698 7654 3", "length and layout of a GB IBAN"),
    ("iban", "XX63 WEST 1234 5698 7654 3", "country XX does not issue IBANs"),
    ("iban", "ES29 2100 0418 4602 0005 1332", "national check digits inside this ES IBAN"),
    # imo
    ("imo", "IMO 9319467", "IMO check digit is 7, expected 6"),
    ("imo", "IMO 931946", "must have 7 digits, got 6"),
    ("imo", "IMO 93I9466", "must be 7 digits"),
    # container
    ("container", "CSQU3054389", "container check digit is 9, expected 3"),
    ("container", "CSQU 305438", "must have 11 characters"),
    ("container", "CSQX3054383", "category letter U, J, Z or R"),
    ("container", "C5QU3054383", "3-letter owner code"),
    # vin
    ("vin", "1M8GDM9A1KP042788", "check digit (9th character) is 1, expected X"),
    ("vin", "1M8GDM9AXKP04278", "must have 17 characters, got 16"),
    ("vin", "WVWZZZ1JZ3W38675O", "cannot contain O (position 17)"),
    ("vin", "WVWZZZIJZ3W386752", "cannot contain I (position 7)"),
    # lei
    ("lei", "213800KUD8LXJWSQ9D15", "LEI check digits do not verify"),
    ("lei", "213800KUD8LAJWSQ9D1", "must have 20 characters, got 19"),
    ("lei", "213800KUD8LAJWSQ9DAB", "two check digits"),
    # company
    ("company", "Acme Trading Ltd", "needs its country: write NAME|CCC"),
    ("company", "Acme Trading Ltd|GX", "not an ISO 3166 alpha-2 code"),
    ("company", "Acme Trading Ltd|NDL", "did you mean NLD (Netherlands)?"),
    ("company", "...|GBR", "no letters or digits"),
    # plate
    ("plate", "B-MW 1234", "needs its country: write CCC:PLATE"),
    ("plate", "F:AB-123-CD", "only D (Germany, as ICAO 9303 writes it) is read"),
    ("plate", "DEU:BMW#1234", "found '#'"),
    ("plate", "DEU:", "got 0"),
    # awb
    ("awb", "176-12345674", "check digit is 4, expected 5 (1234567 mod 7)"),
    ("awb", "176-1234567", "must have 11 digits, got 10"),
    ("awb", "AB-12345675", "must be 11 digits"),
    # bol, firearm, cites_permit, case_ref
    ("bol", "MAEU#123", "bill of lading number may contain only letters A-Z, digits"),
    ("bol", "A" * 36, "1-35 letters or digits, got 36"),
    ("bol", "- / -", "got 0"),
    ("firearm", "ABC123", "needs make and serial: write MAKE|SERIAL"),
    ("firearm", "|ABC123", "make is empty"),
    ("firearm", "Glock|", "got 0"),
    ("firearm", "Glock|AB#1", "found '#'"),
    ("cites_permit", "22GB001234?01", "found '?'"),
    ("case_ref", "C" * 65, "1-64 letters or digits, got 65"),
]


@pytest.mark.parametrize(("type", "value", "expected"), INVALID)
def test_invalid_values_say_what_is_wrong(type: str, value: str, expected: str) -> None:
    assert expected in reason(type, value)


def test_phone_without_region_needs_country_code() -> None:
    assert "has no country code" in reason("phone", "020 7946 0958", CanonContext())
    assert "config set NODE_DIR region" in reason("phone", "020 7946 0958", CanonContext())
    assert canon("phone", "+44 20 7946 0958", CanonContext()) == "+442079460958"


def test_phone_region_changes_reading_of_national_numbers() -> None:
    assert canon("phone", "030 901820", CanonContext(region="DE")) == "+4930901820"


def test_passport_country_column_and_inline_must_agree() -> None:
    assert PASSPORT.canonical("C01X00T47", CTX, country="DEU") == "DEU:C01X00T47"
    assert PASSPORT.canonical("DEU:C01X00T47", CTX, country="DEU") == "DEU:C01X00T47"
    with pytest.raises(InvalidIdentifier, match="says country FRA but passport_country says DEU"):
        PASSPORT.canonical("FRA:C01X00T47", CTX, country="DEU")


# -- person ---------------------------------------------------------------------------------------

NAMES = ["José Álvarez-Núñez", "ALVAREZ NUNEZ, Jose", "Nuñez, José Alvarez", "jose  alvarez nunez"]
DOBS = ["1980-04-03", "19800403", "03.04.1980", "3.4.1980"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dob", DOBS)
def test_person_notations_give_identical_elements(name: str, dob: str) -> None:
    elements, rejections = canonical_elements({"ref": "r1", "name": name, "dob": dob}, CTX)
    assert rejections == []
    assert elements == [
        ("person", b"blindmatch/v1\x00person\x00alvarez jose nunez|1980-04-03"),
        ("person_year", b"blindmatch/v1\x00person_year\x00alvarez jose nunez|1980"),
    ]


@pytest.mark.parametrize(
    ("name", "tokens"),
    [
        ("Владимир Иванов", "ivanov vladimir"),
        ("O'Brien, Seán", "obren sean"),  # ie folds to e (test_identifiers_names.py)
        ("Jürgen Groß", "gross jurgen"),
        ("Dr. J.R. Smith", "dr j r smith"),
    ],
)
def test_person_names_are_transliterated_and_sorted(name: str, tokens: str) -> None:
    assert PERSON.canonical_name(name) == tokens


DMY = CanonContext(region="GB", date_order="DMY", today=CTX.today)
MDY = CanonContext(region="US", date_order="MDY", today=CTX.today)


def test_slashed_dates_both_readings_valid_need_date_order() -> None:
    with pytest.raises(InvalidIdentifier) as info:
        PERSON.canonical_dob("03/04/1980", CTX)
    assert info.value.reason == (
        "date 03/04/1980 is ambiguous: write 1980-04-03 (day first) or 1980-03-04 (month first), "
        "or set the node's date order with blindmatch config set NODE_DIR date_order DMY (or MDY)"
    )
    assert PERSON.canonical_dob("03/04/1980", DMY) == dt.date(1980, 4, 3)
    assert PERSON.canonical_dob("03-04-1980", DMY) == dt.date(1980, 4, 3)
    assert PERSON.canonical_dob("03/04/1980", MDY) == dt.date(1980, 3, 4)
    assert PERSON.canonical_dob("3-4-1980", MDY) == dt.date(1980, 3, 4)


@pytest.mark.parametrize(
    ("dob", "expected"),
    [
        ("14/03/1978", dt.date(1978, 3, 14)),  # only day first is a date
        ("14-03-1978", dt.date(1978, 3, 14)),
        ("03/14/1978", dt.date(1978, 3, 14)),  # only month first is a date
        ("3/14/1978", dt.date(1978, 3, 14)),
        ("05/05/1980", dt.date(1980, 5, 5)),  # both readings are the same date
        ("31/12/1980", dt.date(1980, 12, 31)),
    ],
)
def test_slashed_dates_with_one_reading_need_no_date_order(dob: str, expected: dt.date) -> None:
    assert PERSON.canonical_dob(dob, CTX) == expected


def test_slashed_dates_with_date_order_are_never_reread() -> None:
    assert PERSON.canonical_dob("14/03/1978", DMY) == dt.date(1978, 3, 14)
    assert PERSON.canonical_dob("05/05/1980", MDY) == dt.date(1980, 5, 5)
    with pytest.raises(InvalidIdentifier) as info:
        PERSON.canonical_dob("14/03/1978", MDY)
    assert info.value.reason == (
        "date 14/03/1978 does not exist when read month first (date_order is MDY); read day "
        "first it would be 1978-03-14: check the value and the node's date_order"
    )
    with pytest.raises(InvalidIdentifier, match="does not exist when read day first .* 1978-03-14"):
        PERSON.canonical_dob("03/14/1978", DMY)


@pytest.mark.parametrize("context", [CTX, DMY, MDY], ids=["no order", "DMY", "MDY"])
@pytest.mark.parametrize("dob", ["13/13/1980", "31/02/1980", "00/01/1980", "02/30/1980"])
def test_slashed_dates_that_exist_in_no_order_are_rejected(dob: str, context) -> None:
    with pytest.raises(InvalidIdentifier, match=f"date {dob} does not exist: check day and month"):
        PERSON.canonical_dob(dob, context)


def test_slashed_date_in_the_future_is_rejected() -> None:
    with pytest.raises(InvalidIdentifier, match="is in the future"):
        PERSON.canonical_dob("13/07/2025", CTX)


@pytest.mark.parametrize(
    ("dob", "expected"),
    [
        ("1980-02-30", "date 1980-02-30 does not exist"),
        ("19801301", "does not exist"),
        ("31.04.1980", "does not exist"),
        ("2025-06-02", "date of birth 2025-06-02 is in the future"),
        ("01.01.2090", "is in the future"),
        ("03.04.80", "two-digit year"),
        ("April 3, 1980", "not in a recognised format: write YYYY-MM-DD"),
        ("1980-4-3", "not in a recognised format"),
        ("1980/04/03", "not in a recognised format"),
    ],
)
def test_bad_dates_are_rejected(dob: str, expected: str) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        PERSON.canonical_dob(dob, CTX)
    assert expected in info.value.reason
    assert info.value.type == "person"


def test_today_is_a_valid_birth_date() -> None:
    assert PERSON.canonical_dob("2025-06-01", CTX) == dt.date(2025, 6, 1)


def test_name_or_dob_alone_is_rejected() -> None:
    assert canonical_elements({"ref": "r", "name": "Jose Alvarez"}, CTX) == (
        [],
        [Rejection("name", "a name alone would match strangers; add dob")],
    )
    elements, rejections = canonical_elements({"ref": "r", "name": "", "dob": "1980-04-03"}, CTX)
    assert elements == []
    assert rejections == [Rejection("dob", "a date of birth alone would match strangers; add name")]


def test_person_errors_name_their_column() -> None:
    elements, rejections = canonical_elements({"ref": "r", "name": "?!", "dob": "03/04/1980"}, CTX)
    assert elements == []
    assert [r.column for r in rejections] == ["name", "dob"]


# -- elements -------------------------------------------------------------------------------------


def test_element_encoding() -> None:
    assert encode_element("iban", "GB82WEST12345698765432") == (
        b"blindmatch/v1\x00iban\x00GB82WEST12345698765432"
    )
    assert encode_element("company", "société|FRA").endswith("société|FRA".encode())
    with pytest.raises(ValueError, match="unknown element type"):
        encode_element("shoe_size", "42")
    with pytest.raises(ValueError, match="NUL"):
        encode_element("bol", "A\x00B")


def test_type_is_part_of_the_element() -> None:
    elements, _ = canonical_elements(
        {"ref": "r", "passport": "AB1234567", "national_id": "AB1234567"}, CTX
    )
    (t1, e1), (t2, e2) = elements
    assert (t1, t2) == ("passport_number", "national_id_number")
    assert e1 != e2
    assert e1.endswith(b"\x00AB1234567") and e2.endswith(b"\x00AB1234567")


# -- rows -----------------------------------------------------------------------------------------


def test_row_gives_elements_and_rejections() -> None:
    row = {
        "ref": "T-1",
        "label": "Op Nightjar, desk 4",
        "name": "José Álvarez-Núñez",
        "dob": "03.04.1980",
        "passport": "c01x00t47",
        "passport_country": "deu",
        "phone": "020 7946 0958",
        "email": "",
        "iban": "GB83 WEST 1234 5698 7654 32",
        "container": "  ",
    }
    elements, rejections = canonical_elements(row, CTX)
    assert [(t, e.split(b"\x00")[-1].decode()) for t, e in elements] == [
        ("person", "alvarez jose nunez|1980-04-03"),
        ("person_year", "alvarez jose nunez|1980"),
        ("passport", "DEU:C01X00T47"),
        ("passport_number", "C01X00T47"),
        ("phone", "+442079460958"),
    ]
    assert rejections == [
        Rejection("iban", "IBAN check digits do not verify: a character is mistyped or missing")
    ]


def test_passport_country_errors_name_their_column() -> None:
    elements, rejections = canonical_elements(
        {"ref": "r", "passport": "C01X00T47", "passport_country": "DX"}, CTX
    )
    assert rejections == [
        Rejection(
            "passport_country", "country 'DX' is not an ISO 3166 alpha-2 code such as NL, GB or DE"
        )
    ]
    # The number itself is valid: it still matches as the weaker element.
    assert elements == [("passport_number", encode_element("passport_number", "C01X00T47"))]
    # A country with no passport qualifies nothing and is not an error.
    assert canonical_elements({"ref": "r", "passport_country": "DEU"}, CTX) == ([], [])


def test_json_values() -> None:
    elements, rejections = canonical_elements(
        {"ref": "r", "imo": 9319466, "awb": None, "bol": 1.5, "case_ref": True}, CTX
    )
    assert elements == [("imo", encode_element("imo", "9319466"))]
    assert [r.column for r in rejections] == ["bol", "case_ref"]
    assert "expected a string" in rejections[0].reason


def test_unknown_column_is_named() -> None:
    with pytest.raises(InvalidInput, match="unknown column 'pasport': did you mean 'passport'"):
        canonical_elements({"ref": "r", "pasport": "C01X00T47"}, CTX)
    with pytest.raises(InvalidInput, match="columns 'name' and 'dob'"):
        check_columns(["ref", "person"])


def test_check_columns() -> None:
    check_columns(["ref", "name", "dob", "passport", "passport_country", "label", "iban"])
    with pytest.raises(InvalidInput, match="no 'ref' column"):
        check_columns(["iban"])
    with pytest.raises(InvalidInput, match="'iban' appears twice"):
        check_columns(["ref", "iban", "iban"])
    with pytest.raises(InvalidInput, match="unknown column 'shoe_size'"):
        check_columns(["ref", "shoe_size"])
    assert known_columns() >= set(IDENTIFIER_TYPES) | {"ref", "label", "name", "dob"}
    assert "person" not in known_columns()


def test_context_is_checked() -> None:
    with pytest.raises(ConfigError, match="region 'UK'"):
        CanonContext(region="UK")
    with pytest.raises(ConfigError, match="date_order"):
        CanonContext(date_order="YMD")  # type: ignore[arg-type]


def test_invalid_identifier_is_a_node_error_and_pickles() -> None:
    error = InvalidIdentifier("iban", "IBAN check digits do not verify")
    assert isinstance(error, NodeError)
    assert str(error) == "IBAN check digits do not verify"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.type, copy.reason, str(copy)) == (error.type, error.reason, str(error))


# -- properties -----------------------------------------------------------------------------------

ALNUM = string.ascii_uppercase + string.digits
separators = st.sampled_from([" ", "-", ".", "/", " - ", "\u2013", "\u00a0"])


@st.composite
def noisy(draw: st.DrawFn, text: str) -> str:
    """Insert separators between some characters of `text` and lower-case some."""
    out: list[str] = []
    for char in text:
        separate, lower = draw(st.booleans()), draw(st.booleans())
        if out and separate:
            out.append(draw(separators))
        out.append(char.lower() if lower else char)
    return "".join(out)


@st.composite
def containers(draw: st.DrawFn) -> str:
    body = draw(st.text(string.ascii_uppercase, min_size=3, max_size=3)) + "U"
    body += draw(st.text(string.digits, min_size=6, max_size=6))
    return body + stdnum_iso6346.calc_check_digit(body)


@st.composite
def imos(draw: st.DrawFn) -> str:
    body = draw(st.text(string.digits, min_size=6, max_size=6))
    return body + stdnum_imo.calc_check_digit(body)


@st.composite
def awbs(draw: st.DrawFn) -> str:
    prefix = draw(st.text(string.digits, min_size=3, max_size=3))
    serial = draw(st.integers(0, 9_999_999))
    return f"{prefix}{serial:07d}{serial % 7}"


@st.composite
def gb_ibans(draw: st.DrawFn) -> str:
    bban = draw(st.text(string.ascii_uppercase, min_size=4, max_size=4))
    bban += draw(st.text(string.digits, min_size=14, max_size=14))
    return "GB" + stdnum_iban.calc_check_digits("GB00" + bban) + bban


@st.composite
def leis(draw: st.DrawFn) -> str:
    body = draw(st.text(ALNUM, min_size=18, max_size=18))
    return body + mod_97_10.calc_check_digits(body)


@st.composite
def passports(draw: st.DrawFn) -> str:
    number = draw(st.text(ALNUM, min_size=5, max_size=20))
    country = draw(st.one_of(st.none(), st.sampled_from(["NLD", "nl", "D", "GBD", "XK", "gbr"])))
    return f"{country}:{number}" if country else number


COMPACT_VALID = {
    "container": containers(),
    "imo": imos(),
    "awb": awbs(),
    "iban": gb_ibans(),
    "lei": leis(),
    "passport": passports(),
    "bol": st.text(ALNUM, min_size=1, max_size=35),
    "case_ref": st.text(ALNUM, min_size=1, max_size=64),
}


@pytest.mark.parametrize("type", COMPACT_VALID)
@given(data=st.data())
def test_separators_and_case_do_not_change_canonical_form(type: str, data: st.DataObject) -> None:
    value = data.draw(COMPACT_VALID[type])
    canonical = canon(type, value)
    prefix, colon, rest = value.rpartition(":")
    assert canon(type, prefix + colon + data.draw(noisy(rest))) == canonical
    assert canon(type, canonical) == canonical


@pytest.mark.parametrize("identifier", IDENTIFIER_TYPES.values(), ids=IDENTIFIER_TYPES.keys())
@given(value=st.text(max_size=40))
def test_any_text_is_canonical_and_idempotent_or_rejected(identifier, value: str) -> None:
    """No input crashes a canonicaliser, and every canonical form is itself valid input."""
    try:
        canonical = identifier.canonical(value, CTX)
    except InvalidIdentifier as exc:
        assert exc.type == identifier.name and exc.reason
        return
    assert identifier.canonical(canonical, CTX) == canonical
    assert "\x00" not in canonical


@given(value=st.text(alphabet=ALNUM + "|:", max_size=30))
def test_structured_text_is_canonical_and_idempotent_or_rejected(value: str) -> None:
    for type in ("company", "plate", "firearm", "passport", "national_id"):
        try:
            canonical = canon(type, value)
        except InvalidIdentifier:
            continue
        assert canon(type, canonical) == canonical


@given(name=st.text(max_size=40))
def test_person_name_is_idempotent(name: str) -> None:
    try:
        tokens = PERSON.canonical_name(name)
    except InvalidIdentifier:
        return
    assert PERSON.canonical_name(tokens) == tokens
    assert tokens == " ".join(sorted(tokens.split()))


@given(born=st.dates(max_value=dt.date(2025, 6, 1)))
def test_every_past_date_reads_the_same_in_every_notation(born: dt.date) -> None:
    y, m, d = f"{born.year:04d}", f"{born.month:02d}", f"{born.day:02d}"
    notations = [f"{y}-{m}-{d}", f"{y}{m}{d}", f"{d}.{m}.{y}", f"{born.day}.{born.month}.{y}"]
    assert {PERSON.canonical_dob(n, CTX) for n in notations} == {born}


@given(dob=st.text(max_size=20))
def test_any_dob_text_is_a_date_or_rejected(dob: str) -> None:
    try:
        born = PERSON.canonical_dob(dob, CTX)
    except InvalidIdentifier:
        return
    assert born <= dt.date(2025, 6, 1)
