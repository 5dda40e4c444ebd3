"""A peer's released labels (`LabelBook`) and a session's packed hits (`HitTable`)."""

from __future__ import annotations

import numpy as np
import pytest

from crypto.psi import Matches
from node.errors import InvalidInput
from node.sessions.labels import LabelBook
from node.sessions.records import hit_table


def test_labels_by_index_joined_in_arrival_order_without_repeats() -> None:
    book = LabelBook()
    book.add([7, 3], ["case 7", "case 3"], limit=10)
    book.add([7, 7], ["case 7b", "case 7"], limit=10)
    assert book.get(7) == "case 7; case 7b"
    assert book.get_many([3, 4, 7]) == ["case 3", None, "case 7; case 7b"]
    assert book.count == 4
    with pytest.raises(InvalidInput):
        book.add([10], ["out of range"], limit=10)


def test_hits_read_one_at_a_time_by_slices_and_by_iteration_agree() -> None:
    book = LabelBook()
    book.add([j for j in range(0, 5000, 2)], [f"L{j}" for j in range(0, 5000, 2)], limit=5000)
    count = 5000
    matches = Matches(np.arange(count, dtype=np.int64), np.arange(count, dtype=np.int64)[::-1])
    element_ids = np.arange(100, 100 + count, dtype=np.int64)

    def rows(ids: list[int]) -> list[tuple[str, str, str | None] | None]:
        return [None if i == 150 else (f"R{i}", "phone" if i % 3 else "iban", None) for i in ids]

    table = hit_table(matches, element_ids, rows, book)
    assert len(table) == count - 1  # element 150 was removed since the session read its list
    listed = list(table)
    assert listed == table[:] == [table[i] for i in range(len(table))]
    first = listed[0]
    assert first == {"ref": "R100", "type": "phone", "peer_label": None}  # index 4999: odd
    assert listed[1] == {"ref": "R101", "type": "phone", "peer_label": "L4998"}
    assert table[-1] == listed[-1]
