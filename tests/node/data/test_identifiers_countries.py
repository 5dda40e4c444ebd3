"""Tests for country codes: ISO 3166 alpha-3 and alpha-2, ICAO 9303 codes, rejections."""

import datetime as dt

import pycountry
import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.data.identifiers import ICAO_COUNTRY_CODES, IDENTIFIER_TYPES, CanonContext
from node.errors import InvalidIdentifier

CTX = CanonContext(region="GB", today=dt.date(2025, 6, 1))
COUNTRY_TYPES = ["passport", "national_id", "company", "plate"]


def with_country(type: str, code: str) -> str:
    """Return a valid value of `type` written with the country `code`."""
    return {
        "passport": f"{code}:C01X00T47",
        "national_id": f"{code}:99999999R",
        "company": f"Acme Trading Ltd|{code}",
        "plate": f"{code}:AB 123",
    }[type]


def country_of(type: str, code: str) -> str:
    canonical = IDENTIFIER_TYPES[type].canonical(with_country(type, code), CTX)
    return canonical.rpartition("|")[2] if type == "company" else canonical.partition(":")[0]


def problem(type: str, code: str) -> str:
    with pytest.raises(InvalidIdentifier) as info:
        IDENTIFIER_TYPES[type].canonical(with_country(type, code), CTX)
    return info.value.reason


@pytest.mark.parametrize("type", COUNTRY_TYPES)
@pytest.mark.parametrize(
    ("codes", "alpha_3"),
    [
        (["NLD", "NL", "nld", "nl", "Nl", " NLD "], "NLD"),
        (["DEU", "DE", "D", "d", "D<<"], "DEU"),  # D: Germany in ICAO 9303 (and its MRZ, D<<)
        (["GBR", "GB", "UK", "uk"], "GBR"),  # UK: exceptionally reserved in ISO 3166
        (["GRC", "GR", "EL"], "GRC"),  # EL: exceptionally reserved (the EU writes Greece EL)
        (["RKS", "XK", "rks"], "RKS"),  # Kosovo
        (["EUE", "EU"], "EUE"),
        (["GBD"], "GBD"),
        (["XXA", "xxa"], "XXA"),
        (["UNO"], "UNO"),
    ],
)
def test_country_notations(type: str, codes: list[str], alpha_3: str) -> None:
    assert {country_of(type, code) for code in codes} == {alpha_3}


@pytest.mark.parametrize("code", sorted(ICAO_COUNTRY_CODES))
def test_every_icao_code_is_kept_as_itself(code: str) -> None:
    assert country_of("passport", code.lower()) == code
    assert ICAO_COUNTRY_CODES[code]


def test_icao_codes_are_not_iso_codes() -> None:
    iso = {c.alpha_3 for c in pycountry.countries}
    assert not iso & set(ICAO_COUNTRY_CODES)
    assert len(ICAO_COUNTRY_CODES) == 25


@given(country=st.sampled_from(list(pycountry.countries)))
def test_every_iso_country_reads_in_both_alphabets(country) -> None:
    assert country_of("passport", country.alpha_3) == country.alpha_3
    assert country_of("passport", country.alpha_2.lower()) == country.alpha_3


@pytest.mark.parametrize("type", COUNTRY_TYPES)
@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ABC", "country 'ABC' is neither an ISO 3166 nor an ICAO 9303 code: write an ISO 3166 "
                "alpha-3 code such as NLD, GBR or DEU"),
        ("GER", "country 'GER' is neither an ISO 3166 nor an ICAO 9303 code: "
                "did you mean DEU (Germany)?"),
        ("DUE", "did you mean DEU (Germany)?"),  # letters swapped
        ("NDL", "did you mean NLD (Netherlands)?"),
        ("POR", "did you mean PRT (Portugal)?"),
        ("GRE", "did you mean GRC (Greece), GRD (Grenada) or GRL (Greenland)?"),
        ("XX", "country 'XX' is not an ISO 3166 alpha-2 code such as NL, GB or DE"),
        ("F", "country 'F' is not a country code: of one-letter codes only D (Germany"),
        ("GBRX", "country 'GBRX' is not a country code: write ISO 3166 alpha-3 (NLD)"),
        ("N1D", "country 'N1D' is not a country code"),
    ],
)  # fmt: skip
def test_unknown_codes_are_rejected_with_the_code_meant(
    type: str, code: str, expected: str
) -> None:
    assert expected in problem(type, code)


def test_empty_country_is_rejected() -> None:
    assert problem("passport", "") == "country is empty: write an ISO 3166 code such as NLD or NL"
    with pytest.raises(InvalidIdentifier, match="company needs its country"):
        IDENTIFIER_TYPES["company"].canonical("Acme Ltd", CTX)
