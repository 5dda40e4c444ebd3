"""Identifiers: raw values in, canonical forms and elements out (DESIGN §2).

Every identifier is canonicalised by its type and encoded as an element::

    element = b"blindmatch/v1" 0x00 type 0x00 canonical_value      (UTF-8)

so two agencies that hold the same entity produce the same bytes, and a value
of one type never matches a value of another. Canonicalisation is strict: a
value that fails its format or check digit raises `InvalidIdentifier` saying
what is wrong and how to fix it; it is never "fixed" into another value.
Separators people really write (spaces, dashes, dots, slashes, underscores)
are ignored wherever the table says "compact".

=============  ====================================  ======================================
type           canonical form                        accepted input and checks
=============  ====================================  ======================================
passport       ``[CCC:]NUMBER``                      compact, A-Z 0-9, 5-20 chars; country
                                                     from ``passport_country`` or inline
national_id    ``[CCC:]NUMBER``                      as passport; country inline only
person         ``tokens|YYYY-MM-DD``                 columns ``name`` + ``dob``; see below
person_year    ``tokens|YYYY``                       derived from the same two columns
phone          E.164 ``+442079460958``               ``phonenumbers``, region from context
email          trimmed, lower-case                   one ``@``, local part, dotted domain
iban           compact upper-case                    ``stdnum.iban``: mod 97 + country layout
imo            7 digits                              ``stdnum.imo``; "IMO" prefix allowed
container      11 chars ``CSQU3054383``              ``stdnum.iso6346`` check digit
vin            17 chars, no I/O/Q                    check digit where mandatory (below)
lei            20 chars                              ``stdnum.lei`` (ISO 17442 mod 97)
company        ``name tokens|CCC``                   input ``NAME|CCC``; legal form dropped
plate          ``CCC:PLATE``                         input ``CCC:PLATE``; letters + digits
awb            11 digits                             serial's 8th digit = first 7 mod 7
bol            compact upper-case, <= 35 chars       A-Z 0-9
firearm        ``MAKE|SERIAL``                       input ``MAKE|SERIAL``; A-Z 0-9 each
cites_permit   compact upper-case, <= 35 chars       A-Z 0-9
case_ref       compact upper-case, <= 64 chars       A-Z 0-9
=============  ====================================  ======================================

Countries (``CCC``) are ISO 3166-1 alpha-3, upper-case, everywhere; ``D``, the
ICAO 9303 code for Germany printed in German passports, is read as ``DEU``.
Two-letter codes are rejected with a hint rather than converted, because no
reliable alpha-2 table ships with the node's dependencies. A passport or
national ID without a country still matches only the same bare number.

Persons: the name is transliterated (unidecode), case-folded, apostrophes
dropped, other punctuation turned into spaces, and the tokens sorted, so
"José Álvarez-Núñez" and "ALVAREZ NUNEZ, Jose" agree. Dates of birth are
``YYYY-MM-DD``, ``YYYYMMDD`` or ``DD.MM.YYYY``; ``DD/MM/YYYY`` and
``MM/DD/YYYY`` (also with dashes) only when `CanonContext.date_order` says
which; a date that does not exist or lies in the future is rejected. A name
without a date of birth, or a date without a name, is rejected: it would
match strangers.

VIN check digit (position 9) is verified only for North American WMIs (first
character 1-5, or 7 followed by F-Z or a digit, per 49 CFR 565); elsewhere it
is optional and position 9 may be any allowed character.

Companies: the name is transliterated, case-folded, dots and apostrophes
dropped (so "S.A." is "sa"), other punctuation turned into spaces, and
trailing legal forms (``_LEGAL_FORMS``) removed while a token remains.

Plates keep non-ASCII letters (German district codes such as TÖL) rather
than transliterate them; the separators between district code and letters
are not kept, so "B-MW 1234" and "BM-W 1234" share ``DEU:BMW1234``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Literal, NamedTuple, NoReturn

import phonenumbers
from stdnum import iban as stdnum_iban
from stdnum import imo as stdnum_imo
from stdnum import iso6346 as stdnum_iso6346
from stdnum import lei as stdnum_lei
from stdnum.exceptions import InvalidChecksum, InvalidComponent, ValidationError
from unidecode import unidecode

from node.errors import ConfigError, InvalidIdentifier, InvalidInput

__all__ = [
    "ELEMENT_PREFIX",
    "ELEMENT_TYPES",
    "MAX_LABEL_CHARS",
    "IDENTIFIER_TYPES",
    "PASSPORT",
    "PERSON",
    "AirWaybill",
    "BillOfLading",
    "CanonContext",
    "CaseRef",
    "CitesPermit",
    "Company",
    "Container",
    "Email",
    "Firearm",
    "Iban",
    "IdentifierType",
    "Imo",
    "Lei",
    "NationalId",
    "Passport",
    "Person",
    "Phone",
    "Plate",
    "Rejection",
    "Vin",
    "canonical_elements",
    "check_columns",
    "encode_element",
    "known_columns",
    "label_problem",
]

ELEMENT_PREFIX = b"blindmatch/v1\x00"

DateOrder = Literal["DMY", "MDY"]


@dataclass(frozen=True)
class CanonContext:
    """How to read values whose meaning depends on the node: phone region, date order, today."""

    region: str | None = None
    """Default phone region (ISO 3166 alpha-2, e.g. "GB") for numbers written without +CC."""
    date_order: DateOrder | None = None
    """How to read slashed dates of birth; None rejects them as ambiguous."""
    today: dt.date | None = None
    """The date a date of birth may not exceed; None means the current date."""

    def __post_init__(self) -> None:
        if self.region is not None and self.region not in phonenumbers.SUPPORTED_REGIONS:
            raise ConfigError(
                f"region {self.region!r} is not a phone region: use an upper-case "
                "ISO 3166 alpha-2 code such as GB, DE or FR"
            )
        if self.date_order not in (None, "DMY", "MDY"):
            raise ConfigError(f'date_order {self.date_order!r} must be "DMY" or "MDY"')


class Rejection(NamedTuple):
    """A cell that was not turned into an element, and why."""

    column: str
    reason: str


def encode_element(type: str, canonical: str) -> bytes:
    """Return the element for a canonical value of the given type."""
    if type not in ELEMENT_TYPES:
        raise ValueError(f"unknown element type {type!r}")
    if "\x00" in canonical:
        raise ValueError("a canonical value cannot contain NUL")
    return ELEMENT_PREFIX + type.encode() + b"\x00" + canonical.encode()


# -- shared pieces -------------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212./_]+")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")
_DIGITS = re.compile(r"[0-9]+")
_SEPARATOR_NAMES = "spaces, dashes, dots, slashes"


def _compact(value: str) -> str:
    """Drop the separators people write inside identifiers."""
    return _SEPARATORS.sub("", value)


def _country(type: str, value: str) -> str:
    """Return an ISO 3166 alpha-3 country code, upper-case, or raise InvalidIdentifier."""
    code = value.strip()
    if re.fullmatch(r"[A-Za-z]{3}", code):
        return code.upper()
    if code in ("D", "d"):
        return "DEU"
    if re.fullmatch(r"[A-Za-z]{2}", code):
        reason = (
            f"country {code!r} is ISO 3166 alpha-2; write the alpha-3 code (e.g. GBR, DEU, FRA)"
        )
    else:
        reason = f"country {code!r} is not an ISO 3166 alpha-3 code such as GBR, DEU or FRA"
    raise InvalidIdentifier(type, reason)


class IdentifierType(ABC):
    """One identifier type: the element type it produces and how a raw value becomes canonical."""

    name: ClassVar[str]
    """Element type and input column, e.g. "iban"."""
    label: ClassVar[str]
    """How messages call a value of this type, e.g. "IBAN"."""
    example: ClassVar[str]
    """A valid raw value, as a person would write it."""

    @abstractmethod
    def canonical(self, value: str, context: CanonContext) -> str:
        """Return the canonical form of `value`, or raise InvalidIdentifier saying what is wrong."""

    def fail(self, reason: str) -> NoReturn:
        """Raise InvalidIdentifier for this type."""
        raise InvalidIdentifier(self.name, reason)

    def alnum(self, value: str) -> str:
        """Return `value` without separators, upper-case, if only A-Z and 0-9 remain."""
        compact = _compact(value)
        bad = _NOT_ALNUM.search(compact)
        if bad:
            self.fail(
                f"{self.label} may contain only letters A-Z, digits and separators "
                f"({_SEPARATOR_NAMES}); found {bad.group()!r}"
            )
        return compact.upper()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


# -- documents -----------------------------------------------------------------------------------


class _Document(IdentifierType):
    min_length: ClassVar[int] = 5
    max_length: ClassVar[int] = 20

    def canonical(self, value: str, context: CanonContext, country: str | None = None) -> str:
        prefix, colon, number = value.rpartition(":")
        inline = _country(self.name, prefix) if colon else None
        if inline and country and inline != country:
            self.fail(
                f"{self.label} says country {inline} but passport_country says {country}; keep one"
            )
        number = self.alnum(number)
        if not self.min_length <= len(number) <= self.max_length:
            self.fail(
                f"{self.label} must have {self.min_length}-{self.max_length} letters or digits, "
                f"got {len(number)}"
            )
        country = inline or country
        return f"{country}:{number}" if country else number


class Passport(_Document):
    """Passport number, optionally qualified by its issuing country (column passport_country)."""

    name = "passport"
    label = "passport number"
    example = "DEU:C01X00T47"


class NationalId(_Document):
    """National identity number, optionally qualified inline as CCC:NUMBER."""

    name = "national_id"
    label = "national ID"
    example = "ESP:99999999-R"


# -- person --------------------------------------------------------------------------------------

_APOSTROPHES = re.compile(r"['`]")
_NON_TOKEN = re.compile(r"[^a-z0-9]+")
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_COMPACT_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_DOTTED_DATE = re.compile(r"([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{4})")
_SLASHED_DATE = re.compile(r"([0-9]{1,2})([/-])([0-9]{1,2})\2([0-9]{4})")
_SHORT_YEAR = re.compile(r"[0-9]{1,2}([./-])[0-9]{1,2}\1[0-9]{2}")


def _date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


class Person:
    """A person, from the columns name and dob: yields the elements person and person_year."""

    name = "person"

    def canonical_name(self, name: str) -> str:
        """Return the sorted, transliterated, case-folded name tokens joined by single spaces."""
        folded = _APOSTROPHES.sub("", unidecode(name).casefold())
        tokens = _NON_TOKEN.sub(" ", folded).split()
        if not tokens:
            raise InvalidIdentifier(self.name, f"name {name!r} has no letters or digits")
        return " ".join(sorted(tokens))

    def canonical_dob(self, dob: str, context: CanonContext) -> dt.date:
        """Return the date of birth, or raise InvalidIdentifier if it is ambiguous or impossible."""
        dob = dob.strip()
        if m := _ISO_DATE.fullmatch(dob) or _COMPACT_DATE.fullmatch(dob):
            born = _date(int(m[1]), int(m[2]), int(m[3]))
        elif m := _DOTTED_DATE.fullmatch(dob):
            born = _date(int(m[3]), int(m[2]), int(m[1]))
        elif m := _SLASHED_DATE.fullmatch(dob):
            a, b, year = int(m[1]), int(m[3]), int(m[4])
            if context.date_order is None:
                self._ambiguous(dob, a, b, year)
            born = _date(year, b, a) if context.date_order == "DMY" else _date(year, a, b)
        elif _SHORT_YEAR.fullmatch(dob):
            raise InvalidIdentifier(
                self.name, f"date {dob} has a two-digit year: write the full date as YYYY-MM-DD"
            )
        else:
            raise InvalidIdentifier(
                self.name,
                f"date {dob!r} is not in a recognised format: write YYYY-MM-DD (e.g. 1980-04-03), "
                "YYYYMMDD or DD.MM.YYYY",
            )
        if born is None:
            raise InvalidIdentifier(self.name, f"date {dob} does not exist: check day and month")
        if born > (context.today or dt.date.today()):
            raise InvalidIdentifier(self.name, f"date of birth {dob} is in the future")
        return born

    def _ambiguous(self, dob: str, a: int, b: int, year: int) -> NoReturn:
        day_first, month_first = _date(year, b, a), _date(year, a, b)
        if day_first and month_first and day_first != month_first:
            options = f"{day_first} (day first) or {month_first} (month first)"
        elif day_first or month_first:
            options = str(day_first or month_first)
        else:
            raise InvalidIdentifier(self.name, f"date {dob} does not exist: check day and month")
        raise InvalidIdentifier(
            self.name, f"date {dob} is ambiguous: write {options}, or set date_order in node.toml"
        )

    def canonical(self, name: str, dob: str, context: CanonContext) -> tuple[str, str]:
        """Return the canonical values of the person and person_year elements."""
        return self.values(self.canonical_name(name), self.canonical_dob(dob, context))

    @staticmethod
    def values(tokens: str, born: dt.date) -> tuple[str, str]:
        """Return the person and person_year values of canonical name tokens and a birth date."""
        return f"{tokens}|{born.isoformat()}", f"{tokens}|{born.year:04d}"


PERSON = Person()


# -- contact -------------------------------------------------------------------------------------

_PARSE_REASONS = {
    phonenumbers.NumberParseException.NOT_A_NUMBER: "is not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "is too short after the 00 prefix",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "is too short",
    phonenumbers.NumberParseException.TOO_LONG: "is too long",
}
_POSSIBLE_REASONS = {
    phonenumbers.ValidationResult.TOO_SHORT: "is too short for",
    phonenumbers.ValidationResult.TOO_LONG: "is too long for",
    phonenumbers.ValidationResult.INVALID_LENGTH: "has the wrong number of digits for",
}


class Phone(IdentifierType):
    """Phone number, as E.164; numbers without +CC are read in the context's region."""

    name = "phone"
    label = "phone number"
    example = "+44 (0)20 7946 0958"

    def canonical(self, value: str, context: CanonContext) -> str:
        try:
            number = phonenumbers.parse(value, context.region)
        except phonenumbers.NumberParseException as exc:
            if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
                if context.region is None and not value.lstrip().startswith("+"):
                    self.fail(
                        f"phone number {value!r} has no country code: write it as +CC..., "
                        "or set region in node.toml"
                    )
                self.fail(f"phone number {value!r} has an unknown country calling code")
            self.fail(f"phone number {value!r} {_PARSE_REASONS.get(exc.error_type, 'is invalid')}")
        if not phonenumbers.is_valid_number(number):
            code = number.country_code or 0
            where = f"+{code} ({phonenumbers.region_code_for_country_code(code)})"
            why = _POSSIBLE_REASONS.get(
                phonenumbers.is_possible_number_with_reason(number), "is not a valid number for"
            )
            self.fail(f"phone number {value!r} {why} {where}")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_EMAIL_FORBIDDEN = re.compile(r'[\s<>(),;:"\[\]\\\x00-\x1f\x7f]')


class Email(IdentifierType):
    """E-mail address, trimmed and lower-case."""

    name = "email"
    label = "email"
    example = " J.Smith@Example.ORG "

    def canonical(self, value: str, context: CanonContext) -> str:
        address = value.strip()
        if bad := _EMAIL_FORBIDDEN.search(address):
            self.fail(
                f"email contains {bad.group()!r}: write one plain address such as name@example.org"
            )
        if address.count("@") != 1:
            self.fail(f"email must contain exactly one '@', found {address.count('@')}")
        local, _, domain = address.partition("@")
        if not local:
            self.fail("email has nothing before the '@'")
        labels = domain.split(".")
        if len(labels) < 2 or not all(labels):
            self.fail(f"email domain {domain!r} must be a dotted name such as example.org")
        return address.lower()


# -- finance and transport -----------------------------------------------------------------------


class Iban(IdentifierType):
    """International Bank Account Number, compact upper-case (stdnum.iban)."""

    name = "iban"
    label = "IBAN"
    example = "GB82 WEST 1234 5698 7654 32"

    def canonical(self, value: str, context: CanonContext) -> str:
        number = self.alnum(value)
        if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]+", number):
            self.fail(
                "IBAN must start with a two-letter country code and two check digits, "
                "e.g. GB82 WEST 1234 5698 7654 32"
            )
        country = number[:2]
        try:
            stdnum_iban.validate(number)
        except InvalidComponent:
            self.fail(f"IBAN country {country} does not issue IBANs")
        except InvalidChecksum:
            if stdnum_iban.calc_check_digits(number) != number[2:4]:
                self.fail("IBAN check digits do not verify: a character is mistyped or missing")
            self.fail(f"the national check digits inside this {country} IBAN do not verify")
        except ValidationError:
            self.fail(f"IBAN does not have the length and layout of a {country} IBAN")
        return number


class Imo(IdentifierType):
    """IMO ship identification number, 7 digits (stdnum.imo)."""

    name = "imo"
    label = "IMO number"
    example = "IMO 9319466"

    def canonical(self, value: str, context: CanonContext) -> str:
        number = _compact(value)
        if number[:3].upper() == "IMO":
            number = number[3:].lstrip(":")
        if not _DIGITS.fullmatch(number):
            self.fail("IMO number must be 7 digits, optionally after 'IMO', e.g. IMO 9319466")
        if len(number) != 7:
            self.fail(f"IMO number must have 7 digits, got {len(number)}")
        try:
            return stdnum_imo.validate(number)
        except InvalidChecksum:
            expected = stdnum_imo.calc_check_digit(number[:6])
            self.fail(
                f"IMO check digit is {number[6]}, expected {expected}: "
                "re-check the number rather than the check digit"
            )
        except ValidationError:
            self.fail("IMO number must be 7 digits, e.g. IMO 9319466")


_CONTAINER = re.compile(r"[A-Z]{3}[UJZR][0-9]{7}")


class Container(IdentifierType):
    """Shipping container number, ISO 6346 (stdnum.iso6346)."""

    name = "container"
    label = "container number"
    example = "CSQU 305438 3"

    def canonical(self, value: str, context: CanonContext) -> str:
        number = self.alnum(value)
        if len(number) != 11:
            self.fail(
                "container number must have 11 characters (owner code, category letter, "
                f"6-digit serial, check digit), got {len(number)}"
            )
        if not _CONTAINER.fullmatch(number):
            self.fail(
                "container number must be a 3-letter owner code, a category letter U, J, Z or R, "
                "6 digits and a check digit, e.g. CSQU 305438 3"
            )
        try:
            return stdnum_iso6346.validate(number)
        except InvalidChecksum:
            expected = stdnum_iso6346.calc_check_digit(number[:10])
            self.fail(
                f"container check digit is {number[10]}, expected {expected}: "
                "re-check the number rather than the check digit"
            )
        except ValidationError:  # pragma: no cover - the checks above are stricter
            self.fail("container number does not follow ISO 6346, e.g. CSQU 305438 3")


_VIN_VALUES = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def _vin_check_digit(vin: str) -> str:
    remainder = sum(_VIN_VALUES[c] * w for c, w in zip(vin, _VIN_WEIGHTS, strict=True)) % 11
    return "X" if remainder == 10 else str(remainder)


class Vin(IdentifierType):
    """Vehicle identification number: 17 characters without I, O, Q (ISO 3779)."""

    name = "vin"
    label = "VIN"
    example = "1M8GDM9AXKP042788"

    def canonical(self, value: str, context: CanonContext) -> str:
        vin = self.alnum(value)
        if len(vin) != 17:
            self.fail(f"VIN must have 17 characters, got {len(vin)}")
        if bad := re.search(r"[IOQ]", vin):
            self.fail(
                f"VIN cannot contain {bad.group()} (position {bad.start() + 1}): VINs never use "
                "I, O or Q; check whether 1 or 0 was meant"
            )
        if (vin[0] in "12345" or (vin[0] == "7" and vin[1] not in "ABCDE")) and (
            expected := _vin_check_digit(vin)
        ) != vin[8]:
            self.fail(
                f"VIN check digit (9th character) is {vin[8]}, expected {expected}; North "
                "American VINs carry one: re-check the VIN rather than the check digit"
            )
        return vin


class Lei(IdentifierType):
    """Legal Entity Identifier, 20 characters (ISO 17442, stdnum.lei)."""

    name = "lei"
    label = "LEI"
    example = "2138 00KU D8LA JWSQ 9D15"

    def canonical(self, value: str, context: CanonContext) -> str:
        lei = self.alnum(value)
        if len(lei) != 20:
            self.fail(f"LEI must have 20 characters, got {len(lei)}")
        if not _DIGITS.fullmatch(lei[18:]):
            self.fail("LEI must end with two check digits")
        try:
            return stdnum_lei.validate(lei)
        except ValidationError:
            self.fail("LEI check digits do not verify: a character is mistyped")


class AirWaybill(IdentifierType):
    """Air waybill number: 3-digit airline prefix and 8-digit serial with a mod 7 check digit."""

    name = "awb"
    label = "air waybill number"
    example = "176-12345675"

    def canonical(self, value: str, context: CanonContext) -> str:
        number = _compact(value)
        if not _DIGITS.fullmatch(number):
            self.fail(
                "air waybill number must be 11 digits: 3-digit airline prefix and 8-digit serial, "
                "e.g. 176-12345675"
            )
        if len(number) != 11:
            self.fail(f"air waybill number must have 11 digits, got {len(number)}")
        expected = int(number[3:10]) % 7
        if int(number[10]) != expected:
            self.fail(
                f"air waybill check digit is {number[10]}, expected {expected} "
                f"({number[3:10]} mod 7): re-check the serial rather than the check digit"
            )
        return number


# -- organisations, vehicles, goods --------------------------------------------------------------

_LEGAL_FORMS = frozenset(
    {
        "ab",
        "ag",
        "aps",
        "as",
        "bv",
        "co",
        "company",
        "corp",
        "corporation",
        "gmbh",
        "inc",
        "incorporated",
        "kg",
        "limited",
        "llc",
        "llp",
        "lp",
        "ltd",
        "ltda",
        "mbh",
        "nv",
        "oy",
        "plc",
        "pte",
        "pty",
        "sa",
        "sarl",
        "sas",
        "sl",
        "spa",
        "sro",
        "srl",
    }  # fmt: skip
)
_DOTS_APOSTROPHES = re.compile(r"['`.]")


class Company(IdentifierType):
    """Company: normalised name without trailing legal form, and its country, input NAME|CCC."""

    name = "company"
    label = "company"
    example = "Álvarez & Hijos S.A.R.L.|fra"

    def canonical(self, value: str, context: CanonContext) -> str:
        name, bar, country = value.rpartition("|")
        if not bar:
            self.fail("company needs its country: write NAME|CCC, e.g. Acme Trading Ltd|GBR")
        code = _country(self.name, country)
        folded = _DOTS_APOSTROPHES.sub("", unidecode(name).casefold())
        tokens = _NON_TOKEN.sub(" ", folded).split()
        while len(tokens) > 1 and tokens[-1] in _LEGAL_FORMS:
            tokens.pop()
        if not tokens:
            self.fail(f"company name {name!r} has no letters or digits")
        return f"{' '.join(tokens)}|{code}"


class Plate(IdentifierType):
    """Vehicle registration plate with its country, input CCC:PLATE."""

    name = "plate"
    label = "plate"
    example = "D:B-MW 1234"
    max_length: ClassVar[int] = 15

    def canonical(self, value: str, context: CanonContext) -> str:
        country, colon, plate = value.partition(":")
        if not colon:
            self.fail("plate needs its country: write CCC:PLATE, e.g. DEU:B-MW 1234")
        code = _country(self.name, country)
        plate = unicodedata.normalize("NFC", _compact(plate).upper())
        for char in plate:
            if not (char.isalpha() or char in "0123456789"):
                self.fail(f"plate may contain only letters, digits and separators; found {char!r}")
        if not 1 <= len(plate) <= self.max_length:
            self.fail(f"plate must have 1-{self.max_length} letters or digits, got {len(plate)}")
        return f"{code}:{plate}"


class Firearm(IdentifierType):
    """Firearm: make and serial number, input MAKE|SERIAL."""

    name = "firearm"
    label = "firearm serial"
    example = "Česká zbrojovka|A-123 456"
    max_length: ClassVar[int] = 30

    def canonical(self, value: str, context: CanonContext) -> str:
        make, bar, serial = value.partition("|")
        if not bar:
            self.fail("firearm needs make and serial: write MAKE|SERIAL, e.g. Glock|ABC123")
        make = _NOT_ALNUM.sub("", unidecode(make)).upper()
        if not make:
            self.fail("firearm make is empty: write MAKE|SERIAL, e.g. Glock|ABC123")
        serial = self.alnum(serial)
        if not 1 <= len(serial) <= self.max_length:
            self.fail(f"firearm serial must have 1-{self.max_length} characters, got {len(serial)}")
        return f"{make}|{serial}"


class _Reference(IdentifierType):
    max_length: ClassVar[int] = 35

    def canonical(self, value: str, context: CanonContext) -> str:
        ref = self.alnum(value)
        if not 1 <= len(ref) <= self.max_length:
            self.fail(
                f"{self.label} must have 1-{self.max_length} letters or digits, got {len(ref)}"
            )
        return ref


class BillOfLading(_Reference):
    """Bill of lading number, compact upper-case."""

    name = "bol"
    label = "bill of lading number"
    example = "MAEU 123456789"


class CitesPermit(_Reference):
    """CITES permit or certificate number, compact upper-case."""

    name = "cites_permit"
    label = "CITES permit number"
    example = "22GB001234/01"


class CaseRef(_Reference):
    """Case reference of the owning agency, compact upper-case."""

    name = "case_ref"
    label = "case reference"
    example = "OP-2024/0173"
    max_length = 64


# -- registry and rows ---------------------------------------------------------------------------

PASSPORT = Passport()

IDENTIFIER_TYPES: Mapping[str, IdentifierType] = MappingProxyType(
    {
        t.name: t
        for t in (
            PASSPORT,
            NationalId(),
            Phone(),
            Email(),
            Iban(),
            Imo(),
            Container(),
            Vin(),
            Lei(),
            Company(),
            Plate(),
            AirWaybill(),
            BillOfLading(),
            Firearm(),
            CitesPermit(),
            CaseRef(),
        )
    }
)
"""Single-column identifier types by name; each column of that name holds values of that type."""

ELEMENT_TYPES = frozenset(IDENTIFIER_TYPES) | {"person", "person_year"}
"""Every type an element can carry."""

_PLAIN_COLUMNS = frozenset({"ref", "label"})
_PERSON_COLUMNS = frozenset({"name", "dob"})
_KNOWN_COLUMNS = (
    frozenset(IDENTIFIER_TYPES) | _PLAIN_COLUMNS | _PERSON_COLUMNS | {"passport_country"}
)


def known_columns() -> frozenset[str]:
    """Return every column name an input file may use."""
    return _KNOWN_COLUMNS


def _unknown_column(column: str) -> str:
    if column in ("person", "person_year"):
        return f"unknown column {column!r}: a person is given by the columns 'name' and 'dob'"
    close = difflib.get_close_matches(column, sorted(_KNOWN_COLUMNS), n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(_KNOWN_COLUMNS))}"
    return f"unknown column {column!r}: {hint}"


def check_columns(columns: Iterable[str]) -> None:
    """Raise InvalidInput unless `columns` is a usable header: known, unique, with ref.

    Every problem is named in one message, so a header is fixed in one go.
    """
    problems: list[str] = []
    seen: set[str] = set()
    for column in columns:
        if column not in _KNOWN_COLUMNS:
            problems.append(_unknown_column(column))
        elif column in seen:
            problems.append(f"column {column!r} appears twice")
        seen.add(column)
    if "ref" not in seen:
        problems.append("no 'ref' column: every record needs a local ref")
    if problems:
        raise InvalidInput("; ".join(problems))


MAX_LABEL_CHARS = 1000
"""The longest label a record may carry; a peer refuses a longer one."""


def label_problem(label: str) -> str | None:
    """Return why `label` cannot be stored (too long, control characters), or None."""
    if len(label) > MAX_LABEL_CHARS:
        return (
            f"label has {len(label):,} characters, more than the {MAX_LABEL_CHARS:,} a peer "
            "accepts: shorten it to a case reference and contact point"
        )
    if bad := _CONTROL.search(label):
        return f"label contains the control character {bad.group()!r}: remove it"
    return None


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _cell(raw: object) -> str:
    """Return a cell as stripped text; JSON null is empty, JSON integers are their digits."""
    if isinstance(raw, str):
        return raw.strip()
    if raw is None:
        return ""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    raise TypeError(f"expected a string, got JSON {type(raw).__name__} {raw!r}")


def canonical_elements(
    row: Mapping[str, object], context: CanonContext
) -> tuple[list[tuple[str, bytes]], list[Rejection]]:
    """Return the (type, element) pairs of one input row and the cells rejected, with reasons.

    Empty cells are skipped; ref and label are not identifiers; name + dob give person and
    person_year; passport_country qualifies passport. Raises InvalidInput for an unknown column.
    """
    elements: list[tuple[str, bytes]] = []
    rejections: list[Rejection] = []
    cells: dict[str, str] = {}
    for column, raw in row.items():
        if column in _PLAIN_COLUMNS:
            continue
        if column not in _KNOWN_COLUMNS:
            raise InvalidInput(_unknown_column(column))
        try:
            text = _cell(raw)
        except TypeError as exc:
            rejections.append(Rejection(column, str(exc)))
            continue
        if text:
            cells[column] = text

    name, dob = cells.pop("name", ""), cells.pop("dob", "")
    if name and dob:
        tokens: str | None = None
        born: dt.date | None = None
        try:
            tokens = PERSON.canonical_name(name)
        except InvalidIdentifier as exc:
            rejections.append(Rejection("name", exc.reason))
        try:
            born = PERSON.canonical_dob(dob, context)
        except InvalidIdentifier as exc:
            rejections.append(Rejection("dob", exc.reason))
        if tokens is not None and born is not None:
            full, year = PERSON.values(tokens, born)
            elements.append(("person", encode_element("person", full)))
            elements.append(("person_year", encode_element("person_year", year)))
    elif name:
        rejections.append(Rejection("name", "a name alone would match strangers; add dob"))
    elif dob:
        rejections.append(Rejection("dob", "a date of birth alone would match strangers; add name"))

    country = cells.pop("passport_country", "")
    if passport := cells.pop("passport", ""):
        try:
            qualifier = _country("passport", country) if country else None
        except InvalidIdentifier as exc:
            rejections.append(Rejection("passport_country", exc.reason))
        else:
            try:
                value = PASSPORT.canonical(passport, context, country=qualifier)
                elements.append(("passport", encode_element("passport", value)))
            except InvalidIdentifier as exc:
                rejections.append(Rejection("passport", exc.reason))

    for column, text in cells.items():
        try:
            value = IDENTIFIER_TYPES[column].canonical(text, context)
        except InvalidIdentifier as exc:
            rejections.append(Rejection(column, exc.reason))
        else:
            elements.append((column, encode_element(column, value)))
    return elements, rejections
