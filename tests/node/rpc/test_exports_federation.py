"""Two real nodes loaded from real-looking exports match names, countries and passports as written.

Customs exports a semicolon CSV in Windows-1252 with CRLF (Excel on a Dutch
desktop); police exports an .xlsx with dates in date cells. The same people
and documents are written differently on each side: "MÜLLER, Hans" against
"hans muller" and "Hans Mueller", "Ørsted" against "Oersted", NL against NLD,
D against DEU, and a passport with and without its country.
"""

import datetime as dt
from collections.abc import Iterator

import openpyxl
import pytest

from tests.federation import Federation

CUSTOMS = [
    ("ref", "name", "dob", "passport", "passport_country", "label"),
    ("C1", "MÜLLER, Hans", "14/03/1978", "", "", "customs case C1"),
    ("C2", "Ørsted, Karen", "02.01.1969", "", "", "customs case C2"),
    ("C3", "", "", "X1234567", "NL", "customs case C3"),
    ("C4", "", "", "C01X00T47", "D", "customs case C4"),
    ("C5", "", "", "P9876543", "", "customs case C5"),
    ("C6", "Jan Smit", "1990-01-01", "", "", "customs case C6"),
]
POLICE = [
    ("ref", "name", "dob", "passport", "passport_country", "label"),
    ("P1", "hans muller", dt.date(1978, 3, 14), None, None, "police op TULIP"),
    ("P2", "Hans Mueller", dt.date(1978, 3, 14), None, None, "police op TULIP"),
    ("P3", "Karen Oersted", dt.date(1969, 1, 2), None, None, "police op DELTA"),
    ("P4", None, None, "X1234567", "NLD", "police watchlist 11"),
    ("P5", None, None, "C01X00T47", "DEU", "police watchlist 12"),
    ("P6", None, None, "P9876543", "FRA", "police watchlist 13"),
    ("P7", "Jan Smit", dt.date(1991, 1, 1), None, None, "police watchlist 14"),
]
EXPECTED_CUSTOMS = {
    ("C1", "person"),
    ("C1", "person_year"),
    ("C2", "person"),
    ("C2", "person_year"),
    ("C3", "passport"),
    ("C3", "passport_number"),
    ("C4", "passport"),
    ("C4", "passport_number"),
    ("C5", "passport_number"),  # one side does not know the country: the weaker match only
}


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    fed = Federation(tmp_path_factory.mktemp("exports"))
    try:
        for agency in ("customs-nl", "police-nl"):
            fed.add_node(agency)
        fed.add_peer("customs-nl", "police-nl", "--release-labels")
        fed.add_peer("police-nl", "customs-nl", "--release-labels")

        customs_csv = fed.root / "customs-export.csv"
        text = "\r\n".join(";".join(row) for row in CUSTOMS) + "\r\n"
        customs_csv.write_bytes(text.encode("cp1252"))
        fed.cli(
            "ingest", fed.node("customs-nl"), "--list", "seizures", customs_csv,
            "--encoding", "cp1252",
        )  # fmt: skip

        police_xlsx = fed.root / "police-export.xlsx"
        book = openpyxl.Workbook()
        sheet = book.active
        assert sheet is not None
        for row in POLICE:
            sheet.append(list(row))
        book.save(police_xlsx)
        fed.cli("ingest", fed.node("police-nl"), "--list", "targets", police_xlsx)
        fed.start("police-nl")
        yield fed
    finally:
        fed.close()


def test_transliterated_names_countries_and_passports_match(fed: Federation) -> None:
    result = fed.match("customs-nl", "police-nl", "seizures", "targets")
    assert {(m["ref"], m["type"]) for m in result["matches"]} == EXPECTED_CUSTOMS
    labels = {m["ref"]: m["peer_label"] for m in result["matches"]}
    assert labels == {
        "C1": "police op TULIP",
        "C2": "police op DELTA",
        "C3": "police watchlist 11",
        "C4": "police watchlist 12",
        "C5": "police watchlist 13",
    }
    theirs = {(h["ref"], h["type"]) for h in fed.hits("police-nl")}
    assert theirs >= {("P1", "person"), ("P2", "person"), ("P3", "person")}
    assert ("P6", "passport_number") in theirs and ("P6", "passport") not in theirs
    assert not any(ref == "P7" for ref, _ in theirs)
