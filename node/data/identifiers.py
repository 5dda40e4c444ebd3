"""Identifiers: raw values in, canonical forms and elements out (DESIGN §2, docs/IDENTIFIERS.md).

Every identifier is canonicalised by its type and encoded as an element::

    element = b"blindmatch/v1" 0x00 type 0x00 canonical_value      (UTF-8)

so two agencies that hold the same entity produce the same bytes, and a value
of one type never matches a value of another. Canonicalisation is strict: a
value that fails its format or check digit raises `InvalidIdentifier` saying
what is wrong and how to fix it; it is never "fixed" into another value.
Separators people really write (spaces, dashes, dots, slashes, underscores)
are ignored wherever the table says "compact". `CANON_VERSION` names this
set of canonical forms; it is bumped whenever any of them changes.

==================  ===============================  ======================================
type                canonical form                   accepted input and checks
==================  ===============================  ======================================
passport            ``CCC:NUMBER``                   compact, A-Z 0-9, 5-20 chars; country
                                                     from ``passport_country`` or inline
passport_number     ``NUMBER``                       weaker: every passport, country dropped
national_id         ``CCC:NUMBER``                   as passport; country inline only
national_id_number  ``NUMBER``                       weaker: every national ID, no country
person              ``tokens|YYYY-MM-DD``            columns ``name`` + ``dob``; see below
person_year         ``tokens|YYYY``                  weaker: derived from the same columns
phone               E.164 ``+442079460958``          ``phonenumbers``, region from context
email               trimmed, lower-case              one ``@``, local part, dotted domain
iban                compact upper-case               ``stdnum.iban``: mod 97 + country layout
imo                 7 digits                         ``stdnum.imo``; "IMO" prefix allowed
container           11 chars ``CSQU3054383``         ``stdnum.iso6346`` check digit
vin                 17 chars, no I/O/Q               check digit where mandatory (below)
lei                 20 chars                         ``stdnum.lei`` (ISO 17442 mod 97)
company             ``name tokens|CCC``              input ``NAME|CCC``; legal form dropped
plate               ``CCC:PLATE``                    input ``CCC:PLATE``; letters + digits
awb                 11 digits                        serial's 8th digit = first 7 mod 7
bol                 compact upper-case, <= 35 chars  A-Z 0-9
firearm             ``MAKE|SERIAL``                  input ``MAKE|SERIAL``; A-Z 0-9 each
cites_permit        compact upper-case, <= 35 chars  A-Z 0-9
case_ref            compact upper-case, <= 64 chars  A-Z 0-9
==================  ===============================  ======================================

Weaker elements (`WEAKER_ELEMENTS`) back up a stronger one: a passport held
with its country yields ``passport`` and ``passport_number``, one held without
yields only ``passport_number``, so the two lists still meet on the number;
a hit on a weaker element says less and is reported as such.

Countries (``CCC``, in passport, passport_country, national_id, company and
plate) are read case-insensitively from ISO 3166-1 alpha-3 or alpha-2 (via
pycountry; alpha-2 becomes alpha-3), the ISO codes exceptionally reserved for
the UK and Greece (UK, EL) and the EU (EU -> EUE), XK (Kosovo -> RKS), ``D``
(Germany in ICAO 9303 -> DEU), and the ICAO 9303 codes that are not ISO
(``ICAO_COUNTRY_CODES``: GBD, UNO, XXA ... kept as they are). Any other code
is rejected, with the country meant when its name or letters point to one.

Persons: the name is NFC-normalised and transliterated: Greek by ELOT 743 (as
Greek passports print names, with its ου/αυ/ευ/γγ rules); Cyrillic and the
Latin letters ICAO 9303 writes with two letters (Ä Å Æ Ö Ø Œ Ü ß Þ) by the
ICAO 9303 tables, except that a name with a letter only Serbian or Macedonian
has (Ђ Ј Љ Њ Ћ Џ Ѓ Ќ Ѕ) takes their Latin Z H C C S for Ж Х Ц Ч Ш; the rest by
unidecode. It is then case-folded, apostrophes dropped, other punctuation
turned into spaces, and each token folded so the ICAO, national and plain
writings agree: y becomes i, XX after N or a vowel is dropped (ICAO's NXX for
Ñ, UXX for Ü), and in each run of vowels ie, ae, oe, ue become e, a, o, u and
aa, ii become a, i until nothing changes. The tokens are sorted: "MÜLLER,
Hans", "Hans Mueller" and "hans muller" agree, as do "Юрий Гагарин", "Iurii
Gagarin" and "Yuriy Gagarin".

Dates of birth are ``YYYY-MM-DD``, ``YYYYMMDD`` or ``DD.MM.YYYY``;
``DD/MM/YYYY`` and ``MM/DD/YYYY`` (also with dashes) are read when only one
reading is a date or both are the same date, or else by
`CanonContext.date_order` (a date valid only in the other order is rejected,
never re-read); a date that does not exist or lies in the future is rejected.
A name without a date of birth, or a date without a name, is rejected: it
would match strangers.

VIN check digit (position 9) is verified only for North American WMIs (first
character 1-5, or 7 followed by F-Z or a digit, per 49 CFR 565); elsewhere it
is optional and position 9 may be any allowed character.

Companies: the name is transliterated, case-folded, dots and apostrophes
dropped (so "S.A." is "sa"), other punctuation turned into spaces, and
trailing legal forms (``_LEGAL_FORMS``) removed while a token remains.

Plates keep non-ASCII letters (German district codes such as TÖL) rather
than transliterate them; the separators between district code and letters
are not kept, so "B-MW 1234" and "BM-W 1234" share ``DEU:BMW1234``.

`COLUMN_GUIDE` says, for every input column, what it accepts, with an example.

One identifier on its own (the local API's real-time screening) is the cells of
an input row under other names: ``{"type": "passport", "value": ..., "country":
...}`` is the row ``{"passport": ..., "passport_country": ...}``, ``{"type":
"person", "name": ..., "dob": ...}`` the row ``{"name": ..., "dob": ...}``
(`IDENTIFIER_FIELDS`). `identifier_elements` turns it into that row and
canonicalises it with `canonical_elements`, as ingest does: one path, the same
elements, the same reasons.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, Literal, NamedTuple, NoReturn

import phonenumbers
from stdnum.exceptions import InvalidChecksum, InvalidComponent, ValidationError
from unidecode import unidecode

from node.errors import ConfigError, InvalidIdentifier, InvalidInput

__all__ = [
    "CANON_VERSION",
    "COLUMN_GUIDE",
    "ELEMENT_PREFIX",
    "ELEMENT_TYPES",
    "EVENT_COLUMNS",
    "ICAO_COUNTRY_CODES",
    "IDENTIFIER_FIELDS",
    "IDENTIFIER_TYPES",
    "MAX_FIELD_CHARS",
    "MAX_LABEL_CHARS",
    "OPERATIONS_COLUMNS",
    "PASSPORT",
    "PERSON",
    "WEAKER_ELEMENTS",
    "WINDOW_COLUMNS",
    "AirWaybill",
    "BillOfLading",
    "CanonContext",
    "CaseRef",
    "CitesPermit",
    "ColumnHelp",
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
    "check_kind_columns",
    "encode_element",
    "identifier_elements",
    "known_columns",
    "label_problem",
]

ELEMENT_PREFIX = b"blindmatch/v1\x00"

CANON_VERSION = 2
"""Version of the canonical forms; an element made under another version may differ.

Bump whenever any canonical form changes (a fold, a country code, a date rule), so lists
ingested by an older version can be flagged for re-ingest. 1: first forms; 2: ICAO name fold,
alpha-2 and ICAO country codes, passport_number and national_id_number.
"""

DateOrder = Literal["DMY", "MDY"]


@dataclass(frozen=True)
class CanonContext:
    """How to read values whose meaning depends on the node: phone region, date order, today."""

    region: str | None = None
    """Default phone region (ISO 3166 alpha-2, e.g. "GB") for numbers written without +CC."""
    date_order: DateOrder | None = None
    """How to read slashed dates of birth; None reads one only when a single reading is a date."""
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


ICAO_COUNTRY_CODES: Mapping[str, str] = MappingProxyType(
    {
        "GBD": "British Overseas Territories Citizen",
        "GBN": "British National (Overseas)",
        "GBO": "British Overseas Citizen",
        "GBP": "British Protected Person",
        "GBS": "British Subject",
        "UNO": "United Nations Organization or one of its officials",
        "UNA": "specialized agency of the United Nations or one of its officials",
        "UNK": "resident of Kosovo with a travel document issued by UNMIK",
        "XXA": "stateless person (1954 Convention)",
        "XXB": "refugee (1951 Convention and 1967 Protocol)",
        "XXC": "refugee other than under XXB",
        "XXX": "person of unspecified nationality",
        "EUE": "European Union (laissez-passer)",
        "RKS": "Kosovo (passports of the Republic of Kosovo)",
        "XOM": "Sovereign Military Order of Malta",
        "XBA": "African Development Bank",
        "XIM": "African Export-Import Bank",
        "XCC": "Caribbean Community (CARICOM)",
        "XCE": "Council of Europe",
        "XCO": "Common Market for Eastern and Southern Africa (COMESA)",
        "XEC": "Economic Community of West African States (ECOWAS)",
        "XPO": "International Criminal Police Organization (INTERPOL)",
        "XES": "Organisation of Eastern Caribbean States (OECS)",
        "XMP": "Parliamentary Assembly of the Mediterranean",
        "XDC": "Southern African Development Community (SADC)",
    }
)
"""Codes ICAO 9303 uses for nationality or issuing authority that ISO 3166 does not assign."""

_COUNTRY_ALIASES = {"D": "DEU", "UK": "GBR", "EL": "GRC", "EU": "EUE", "XK": "RKS"}
"""D: Germany in ICAO 9303; UK, EL, EU: ISO 3166 exceptionally reserved; XK: Kosovo (user code)."""


@functools.cache
def _country_tables() -> tuple[dict[str, str], dict[str, str]]:
    """Return code (alpha-3, alpha-2, ICAO, alias) -> alpha-3, and alpha-3 -> name.

    Made on first use: pycountry is slow to import, and only canonicalising needs it.
    """
    import pycountry

    codes: dict[str, str] = {}
    names: dict[str, str] = {}
    for country in pycountry.countries:
        codes[country.alpha_3] = codes[country.alpha_2] = country.alpha_3
        names[country.alpha_3] = getattr(country, "common_name", None) or country.name
    for code, meaning in ICAO_COUNTRY_CODES.items():
        codes[code], names[code] = code, meaning
    for alias, code in _COUNTRY_ALIASES.items():
        codes[alias] = code
    return codes, names


@functools.cache
def _country_hints() -> dict[str, list[str]]:
    """Return the codes a wrong code may mean: by a name's first letters, by the same letters."""
    import pycountry

    _, country_names = _country_tables()
    hints: dict[str, list[str]] = {}
    for country in pycountry.countries:
        for name in {country.name, country_names[country.alpha_3]}:
            letters = re.sub(r"[^a-z]", "", unidecode(name).lower())[:3]
            hints.setdefault(letters, []).append(country.alpha_3)
    for code in country_names:
        hints.setdefault("".join(sorted(code)), []).append(code)
    return hints


def _country_problem(code: str) -> str:
    """Return why `code` is not a country code, naming the codes meant where they are clear."""
    if not code:
        return "country is empty: write an ISO 3166 code such as NLD or NL"
    shown, upper = repr(code), code.upper()
    if not re.fullmatch(r"[A-Z]{1,3}", upper):
        return (
            f"country {shown} is not a country code: write ISO 3166 alpha-3 (NLD) or alpha-2 (NL)"
        )
    if len(upper) == 1:
        return (
            f"country {shown} is not a country code: of one-letter codes only D (Germany, as "
            "ICAO 9303 writes it) is read; write ISO 3166 alpha-3 (NLD) or alpha-2 (NL)"
        )
    if len(upper) == 2:
        return f"country {shown} is not an ISO 3166 alpha-2 code such as NL, GB or DE"
    by_name = _country_hints().get(upper.lower(), [])
    by_letters = _country_hints().get("".join(sorted(upper)), [])
    meant = list(dict.fromkeys(by_name + by_letters))[:3]
    if not meant:
        return (
            f"country {shown} is neither an ISO 3166 nor an ICAO 9303 code: write an ISO 3166 "
            "alpha-3 code such as NLD, GBR or DEU"
        )
    _, country_names = _country_tables()
    options = [f"{c} ({country_names[c]})" for c in meant]
    listed = options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"
    return f"country {shown} is neither an ISO 3166 nor an ICAO 9303 code: did you mean {listed}?"


def _country(type: str, value: str) -> str:
    """Return the alpha-3 (or ICAO 9303) code of a country code, or raise InvalidIdentifier."""
    code = value.strip()
    if (alpha_3 := _country_tables()[0].get(code.upper().rstrip("<"))) is not None:
        return alpha_3
    raise InvalidIdentifier(type, _country_problem(code))


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

_ICAO_LATIN = {"Ä": "AE", "Å": "AA", "Æ": "AE", "Ö": "OE", "Ø": "OE", "Œ": "OE", "Ü": "UE",
               "ß": "SS", "ẞ": "SS", "Þ": "TH"}  # fmt: skip
"""ICAO 9303 Part 3 section 6: the Latin letters written with two letters (others: unidecode)."""
_ICAO_CYRILLIC = {
    "А": "A", "Б": "B", "В": "V", "Г": "G", "Ґ": "G", "Д": "D", "Ѓ": "G", "Ђ": "D", "Е": "E",
    "Ё": "E", "Є": "IE", "Ж": "ZH", "З": "Z", "Ѕ": "DZ", "И": "I", "І": "I", "Ї": "I", "Й": "I",
    "Ј": "J", "К": "K", "Л": "L", "Љ": "LJ", "М": "M", "Н": "N", "Њ": "NJ", "О": "O", "П": "P",
    "Р": "R", "С": "S", "Т": "T", "Ћ": "C", "Ќ": "K", "У": "U", "Ў": "U", "Ф": "F", "Х": "KH",
    "Ц": "TS", "Ч": "CH", "Џ": "DZ", "Ш": "SH", "Щ": "SHCH", "Ъ": "IE", "Ы": "Y", "Ь": "",
    "Э": "E", "Ю": "IU", "Я": "IA",
}  # fmt: skip
"""ICAO 9303 Part 3 section 6: Cyrillic."""
_ELOT_GREEK = {
    "Α": "A", "Β": "V", "Γ": "G", "Δ": "D", "Ε": "E", "Ζ": "Z", "Η": "I", "Θ": "TH", "Ι": "I",
    "Κ": "K", "Λ": "L", "Μ": "M", "Ν": "N", "Ξ": "X", "Ο": "O", "Π": "P", "Ρ": "R", "Σ": "S",
    "Τ": "T", "Υ": "Y", "Φ": "F", "Χ": "CH", "Ψ": "PS", "Ω": "O",
}  # fmt: skip
"""ELOT 743 (as Greek passports print names): letters; digraphs are `_elot_digraphs`."""


def _accented_letters() -> dict[str, list[tuple[str, str]]]:
    """Return base letter -> (letter, its marks) for the accented Greek and Cyrillic letters."""
    accented: dict[str, list[tuple[str, str]]] = {}
    for code in (*range(0x0370, 0x0530), *range(0x1F00, 0x2000)):  # Greek, Cyrillic, polytonic
        nfd = unicodedata.normalize("NFD", chr(code))
        if len(nfd) > 1:
            accented.setdefault(nfd[0], []).append((chr(code), nfd[1:]))
    return accented


_ACCENTED = _accented_letters()


def _script_letters(bases: str, *, diaeresis: bool = True) -> str:
    """Return `bases` and every Greek or Cyrillic letter that is one of them with accents."""
    return bases + "".join(
        letter
        for base in bases
        for letter, marks in _ACCENTED.get(base, [])
        if diaeresis or "\u0308" not in marks
    )


def _transliteration() -> dict[int, str]:
    """Return the str.translate table of the ICAO and ELOT letters, any case, any accent."""
    letters: dict[str, str] = {}
    for table in (_ICAO_LATIN, _ICAO_CYRILLIC, _ELOT_GREEK):
        for upper, latin in table.items():
            letters[upper], letters[upper.lower()] = latin, latin.lower()
    letters["ς"] = "s"
    for base, latin in list(letters.items()):
        for accented in _script_letters(base):
            letters.setdefault(accented, latin)  # Ѐ, ά, ῆ ...: as the base letter
    return str.maketrans(letters)


_TRANSLITERATION = _transliteration()
_TABLE_LETTERS = re.compile(f"[{re.escape(''.join(sorted(map(chr, _TRANSLITERATION))))}]")
_SOUTH_SLAVIC_LATIN = {"Ж": "Z", "Х": "H", "Ц": "C", "Ч": "C", "Ш": "S"}
_SOUTH_SLAVIC = _TRANSLITERATION | str.maketrans(
    _SOUTH_SLAVIC_LATIN | {k.lower(): v.lower() for k, v in _SOUTH_SLAVIC_LATIN.items()}
)
"""Serbian and Macedonian Cyrillic as their Latin alphabets write it (Ž, H, C, Č, Š)."""
_SOUTH_SLAVIC_ONLY = re.compile("[ЂЈЉЊЋЏЃЌЅђјљњћџѓќѕ]")  # letters no other Cyrillic alphabet has
_GREEK = re.compile("[\u0370-\u03ff\u1f00-\u1fff]")
_GREEK_U = _script_letters("Υυ", diaeresis=False)  # υ that is not a separate vowel (ϋ)
_ELOT_OU = re.compile(f"[{_script_letters('Οο')}][{_GREEK_U}]")
_ELOT_U_AFTER = f"(?<=[{_script_letters('ΑαΕεΗη')}])[{_GREEK_U}]"
_ELOT_UF = re.compile(_ELOT_U_AFTER + r"(?:(?=[θκξπστςφχψΘΚΞΠΣΤΦΧΨ])|(?![^\W\d_]))")
_ELOT_UV = re.compile(_ELOT_U_AFTER)
_ELOT_NASAL_G = re.compile("[Γγ](?=[ΓγΞξΧχ])")


def _elot_digraphs(name: str) -> str:
    """Write the ELOT 743 digraphs of Greek text in Latin: ου ou, αυ/ευ/ηυ av/af..., γγ ng."""
    name = _ELOT_OU.sub("ou", name)
    name = _ELOT_UV.sub("v", _ELOT_UF.sub("f", name))  # f before a voiceless letter or at the end
    return _ELOT_NASAL_G.sub("n", name)  # γγ ng, γξ nx, γχ nch


_APOSTROPHES = re.compile(r"['`]")
_NON_TOKEN = re.compile(r"[^a-z0-9]+")
_ICAO_XX = re.compile(r"(?<=[aeioun])(?:xx)+")  # ICAO's NXX for Ñ, UXX for Ü (also UEXX)
_VOWEL_RUN = re.compile(r"[aeiou]{2,}")
_DOUBLED_AI = re.compile(r"([ai])\1+")


@functools.lru_cache(maxsize=4096)
def _fold_vowels(run: str) -> str:
    """Return a run of vowels with ie, ae, oe, ue, aa, ii folded to e, a, o, u, a, i, repeatedly."""
    while True:
        folded = run.replace("ie", "e").replace("ae", "a").replace("oe", "o").replace("ue", "u")
        folded = _DOUBLED_AI.sub(r"\1", folded)
        if folded == run:
            return run
        run = folded


def _fold_vowel_run(match: re.Match[str]) -> str:
    return _fold_vowels(match[0])


_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_COMPACT_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_DOTTED_DATE = re.compile(r"([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{4})")
_SLASHED_DATE = re.compile(r"([0-9]{1,2})([/-])([0-9]{1,2})\2([0-9]{4})")
_SHORT_YEAR = re.compile(r"[0-9]{1,2}([./-])[0-9]{1,2}\1[0-9]{2}")
_DATE_ORDER_HINT = "blindmatch config set NODE_DIR date_order DMY"


def _date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


class Person:
    """A person, from the columns name and dob: yields the elements person and person_year."""

    name = "person"

    def canonical_name(self, name: str) -> str:
        """Return the transliterated, case-folded, ICAO-folded name tokens, sorted, space-joined."""
        latin = name
        if not latin.isascii():
            latin = unicodedata.normalize("NFC", latin)
            if _TABLE_LETTERS.search(latin):
                if _GREEK.search(latin):
                    latin = _elot_digraphs(latin)
                table = _SOUTH_SLAVIC if _SOUTH_SLAVIC_ONLY.search(latin) else _TRANSLITERATION
                latin = latin.translate(table)
            if not latin.isascii():
                latin = unidecode(latin)
        folded = _NON_TOKEN.sub(" ", _APOSTROPHES.sub("", latin.lower())).replace("y", "i")
        if "xx" in folded:
            folded = _ICAO_XX.sub("", folded)
        tokens = _VOWEL_RUN.sub(_fold_vowel_run, folded).split()
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
            born = self._slashed(dob, int(m[1]), int(m[3]), int(m[4]), context.date_order)
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

    def _slashed(self, dob: str, a: int, b: int, year: int, order: DateOrder | None) -> dt.date:
        """Read a/b/year: in `order`, or when only one reading is a date (or both are the same)."""
        day_first, month_first = _date(year, b, a), _date(year, a, b)
        if order is None:
            if day_first and month_first and day_first != month_first:
                raise InvalidIdentifier(
                    self.name,
                    f"date {dob} is ambiguous: write {day_first} (day first) or {month_first} "
                    f"(month first), or set the node's date order with {_DATE_ORDER_HINT} "
                    "(or MDY)",
                )
            born = day_first or month_first
        else:
            born, other = (day_first, month_first) if order == "DMY" else (month_first, day_first)
            if born is None and other is not None:
                read, other_read = ("day", "month") if order == "DMY" else ("month", "day")
                raise InvalidIdentifier(
                    self.name,
                    f"date {dob} does not exist when read {read} first (date_order is {order}); "
                    f"read {other_read} first it would be {other}: check the value and the "
                    "node's date_order",
                )
        if born is None:
            raise InvalidIdentifier(self.name, f"date {dob} does not exist: check day and month")
        return born

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
                        "or set the node's region: 'blindmatch config set NODE_DIR region NL'"
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
        from stdnum import iban as stdnum_iban  # stdnum's modules: only when canonicalising

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
        from stdnum import imo as stdnum_imo

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
        from stdnum import iso6346 as stdnum_iso6346

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
        from stdnum import lei as stdnum_lei

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

MAX_LABEL_CHARS = 1000
"""The longest label a record may carry; a peer refuses a longer one."""


WEAKER_ELEMENTS: Mapping[str, str] = MappingProxyType(
    {"person_year": "person", "passport_number": "passport", "national_id_number": "national_id"}
)
"""Weaker element type -> the stronger type it backs up; a hit on it says less about identity."""

ELEMENT_TYPES = frozenset(IDENTIFIER_TYPES) | {"person", "event"} | frozenset(WEAKER_ELEMENTS)
"""Every type an element can carry (``event``: `node.data.events`)."""

WINDOW_COLUMNS = ("valid_from", "valid_until")
"""An operations record's validity window (`node.data.events.read_window`), each optional."""
EVENT_COLUMNS = ("lat", "lon", "radius_m", "start", "end")
"""An operations record's event (`node.data.events.read_event`): all or none."""
OPERATIONS_COLUMNS = frozenset(WINDOW_COLUMNS + EVENT_COLUMNS)
"""Columns only an ``operations`` list may have; `canonical_elements` leaves them out."""

_DOCUMENT_NUMBERS = {strong: weak for weak, strong in WEAKER_ELEMENTS.items() if strong != "person"}
_PLAIN_COLUMNS = frozenset({"ref", "label"})
_PERSON_COLUMNS = frozenset({"name", "dob"})
_KNOWN_COLUMNS = (
    frozenset(IDENTIFIER_TYPES)
    | _PLAIN_COLUMNS
    | _PERSON_COLUMNS
    | {"passport_country"}
    | OPERATIONS_COLUMNS
)


@dataclass(frozen=True)
class ColumnHelp:
    """One input column: what it accepts and a valid example."""

    column: str
    format: str
    example: str


def _help(column: str, format: str) -> ColumnHelp:
    return ColumnHelp(column, format, IDENTIFIER_TYPES[column].example)


COLUMN_GUIDE: tuple[ColumnHelp, ...] = (
    ColumnHelp("ref", "required: your own record reference, any text; never sent", "T-0001"),
    ColumnHelp(
        "label",
        f"optional: case reference and contact point a peer sees on a match if policy allows; "
        f"up to {MAX_LABEL_CHARS:,} characters",
        "Op Nightjar, desk 4",
    ),
    ColumnHelp(
        "name",
        "full name, any script, any order, with dob; case, punctuation and ICAO 9303 "
        "variants (Ü UE U, Ø OE O, Й I Y ...) do not matter",
        "MÜLLER, Hans",
    ),
    ColumnHelp(
        "dob",
        "date of birth, with name: YYYY-MM-DD, YYYYMMDD, DD.MM.YYYY; DD/MM/YYYY or MM/DD/YYYY "
        "when only one reading is a date or date_order is set",
        "1980-04-03",
    ),
    _help(
        "passport",
        "passport number, 5-20 letters and digits; CCC:NUMBER or passport_country adds the "
        "issuing country (without one it matches only as passport_number)",
    ),
    ColumnHelp(
        "passport_country",
        "issuing country of passport: ISO 3166 alpha-3 or alpha-2 (NLD, NL), or ICAO 9303 "
        "(D, GBD, XXA ...)",
        "D",
    ),
    _help("national_id", "national ID number, 5-20 letters and digits; CCC:NUMBER adds country"),
    _help("phone", "phone number: +CC... or 00CC..., or national in the node's region"),
    ColumnHelp("email", "one e-mail address; case does not matter", "J.Smith@Example.org"),
    _help("iban", "IBAN, spaces allowed; check digits verified"),
    _help("imo", "IMO ship number: 7 digits, optional IMO prefix; check digit verified"),
    _help("container", "container number (ISO 6346): owner code, U/J/Z/R, 6 digits, check digit"),
    _help("bol", "bill of lading number: up to 35 letters and digits"),
    _help("awb", "air waybill: 3-digit airline prefix, 8-digit serial (mod 7 check digit)"),
    _help("vin", "vehicle identification number: 17 characters without I, O, Q"),
    _help("plate", "CCC:PLATE, country as for passport_country; letters (any script), digits"),
    _help("lei", "Legal Entity Identifier: 20 characters; check digits verified"),
    _help("company", "NAME|CCC; legal form (Ltd, GmbH, S.A. ...), case and punctuation ignored"),
    _help("firearm", "MAKE|SERIAL; serial up to 30 letters and digits"),
    _help("cites_permit", "CITES permit or certificate number: up to 35 letters and digits"),
    _help("case_ref", "case reference: up to 64 letters and digits"),
    ColumnHelp(
        "valid_from",
        "operations lists only: when the record starts to match; ISO 8601 date or date-time, "
        "UTC unless it has an offset",
        "2026-03-01",
    ),
    ColumnHelp(
        "valid_until",
        "operations lists only: when the record stops matching and is erased; a date alone "
        "means the end of that day",
        "2026-03-31",
    ),
    ColumnHelp("lat", "operations lists only: event latitude in degrees, -90 to 90", "52.3702"),
    ColumnHelp("lon", "operations lists only: event longitude in degrees, -180 to 180", "4.8952"),
    ColumnHelp("radius_m", "operations lists only: event radius in metres, 10 to 50,000", "1000"),
    ColumnHelp(
        "start",
        "operations lists only: event start, ISO 8601 date or date-time (UTC unless it has "
        "an offset); with lat, lon, radius_m and end",
        "2026-03-01T18:00+01:00",
    ),
    ColumnHelp(
        "end",
        "operations lists only: event end, after start, at most 31 days later; a date alone "
        "means the end of that day",
        "2026-03-02T06:00+01:00",
    ),
)
"""Every input column in a sensible order (for `blindmatch columns` and the README)."""


def known_columns() -> frozenset[str]:
    """Return every column name an input file may use."""
    return _KNOWN_COLUMNS


def _unknown_column(column: str) -> str:
    if column in ("person", "person_year"):
        return f"unknown column {column!r}: a person is given by the columns 'name' and 'dob'"
    if column in ("passport_number", "national_id_number"):
        document = WEAKER_ELEMENTS[column]
        return f"unknown column {column!r}: write the number in the column {document!r}"
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


def check_kind_columns(columns: Iterable[str], kind: str) -> None:
    """Raise InvalidInput naming every column that a list of `kind` may not have."""
    if kind == "operations":
        return
    found = [c for c in dict.fromkeys(columns) if c in OPERATIONS_COLUMNS]
    if found:
        names = ", ".join(repr(c) for c in found)
        raise InvalidInput(
            f"column(s) {names} are only for operations lists (validity windows and events), "
            f"and this list is a {kind} list: ingest the file with --kind operations into an "
            "operations list, or remove the column(s)"
        )


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

    Empty cells are skipped; ref and label are not identifiers, nor are the operations columns
    (windows and events: `node.data.events`); name + dob give person and
    person_year; passport_country qualifies passport; a passport or national ID gives its
    number as the weaker passport_number or national_id_number too, and as passport or
    national_id when it has a country. Raises InvalidInput for an unknown column.
    """
    elements: list[tuple[str, bytes]] = []
    rejections: list[Rejection] = []
    cells: dict[str, str] = {}
    for column, raw in row.items():
        if column in _PLAIN_COLUMNS or column in OPERATIONS_COLUMNS:
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
        qualifier: str | None = None
        try:
            qualifier = _country("passport", country) if country else None
        except InvalidIdentifier as exc:  # the number alone still yields passport_number
            rejections.append(Rejection("passport_country", exc.reason))
        try:
            value = PASSPORT.canonical(passport, context, country=qualifier)
        except InvalidIdentifier as exc:
            rejections.append(Rejection("passport", exc.reason))
        else:
            elements.extend(_document_elements("passport", value))

    for column, text in cells.items():
        try:
            value = IDENTIFIER_TYPES[column].canonical(text, context)
        except InvalidIdentifier as exc:
            rejections.append(Rejection(column, exc.reason))
        else:
            if column in _DOCUMENT_NUMBERS:
                elements.extend(_document_elements(column, value))
            else:
                elements.append((column, encode_element(column, value)))
    return elements, rejections


IDENTIFIER_FIELDS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "person": MappingProxyType({"name": "name", "dob": "dob"}),
        "passport": MappingProxyType({"value": "passport", "country": "passport_country"}),
        **{
            name: MappingProxyType({"value": name})
            for name in IDENTIFIER_TYPES
            if name != "passport"
        },
    }
)
"""Per identifier type, its fields (besides ``type``) and the input column each one is."""
_REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {"person": ("name", "dob")}
_IGNORED_FIELDS = frozenset({"type", "ref"})  # `ref` is the caller's, never canonicalised
MAX_FIELD_CHARS = 1000
"""The longest value a field of one identifier may hold (ingest cells are bounded by the file)."""


def identifier_elements(
    identifier: Mapping[str, object], context: CanonContext, where: str = "identifier"
) -> list[tuple[str, bytes]]:
    """Return the (type, element) pairs of one typed identifier, canonicalised as ingest does.

    Raises InvalidInput naming the field (``{where}.value``, ``{where}.dob`` ...) and
    every reason, for a value that ingest would reject, a missing or unknown field,
    or an unknown type.
    """
    if not isinstance(identifier, Mapping):
        raise InvalidInput(f"{where}: must be an object with a type and its fields")
    kind = identifier.get("type")
    fields = IDENTIFIER_FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        known = ", ".join(sorted(IDENTIFIER_FIELDS))
        shown = "missing" if kind is None else f"{str(kind)[:40]!r} is not an identifier type"
        raise InvalidInput(f"{where}.type: {shown}; use one of {known}")
    problems: list[str] = []
    row: dict[str, object] = {}
    for key, raw in identifier.items():
        if key in _IGNORED_FIELDS:
            continue
        column = fields.get(key)
        if column is None:
            allowed = ", ".join(["type", *fields, "ref"])
            problems.append(f"{where}.{str(key)[:40]}: unknown field for {kind} (use {allowed})")
        elif isinstance(raw, str) and len(raw) > MAX_FIELD_CHARS:
            problems.append(f"{where}.{key}: longer than {MAX_FIELD_CHARS:,} characters")
        else:
            row[column] = raw
    required = _REQUIRED_FIELDS.get(str(kind), ("value",))
    for key in required:
        if identifier.get(key) in (None, ""):
            problems.append(f"{where}.{key}: missing; a {kind} needs {' and '.join(required)}")
    if not problems:
        elements, rejections = canonical_elements(row, context)
        field_of = {column: key for key, column in fields.items()}
        problems = [f"{where}.{field_of[r.column]}: {r.reason}" for r in rejections]
        if not elements and not problems:  # a value of only separators, say
            problems.append(f"{where}.{next(iter(fields))}: has no value to screen")
    if problems:
        raise InvalidInput("; ".join(problems))
    return elements


def _document_elements(type: str, value: str) -> list[tuple[str, bytes]]:
    """Return a document's elements: CCC:NUMBER as `type` if it has a country, NUMBER as weaker."""
    country, colon, number = value.rpartition(":")
    weaker = _DOCUMENT_NUMBERS[type]
    elements = [(type, encode_element(type, value))] if colon else []
    elements.append((weaker, encode_element(weaker, number)))
    return elements
