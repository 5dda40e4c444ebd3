"""Labels of matched records, exchanged keyed by the matched element's index.

The index is the matched y_b's position in the order the responder sent it:
the one reference both sides of a mutual session share. Several records may
share an element, so one index may carry several labels.

Both directions stay packed: the labels we release are read from the store a
few thousand matches at a time, as the session's hits are
(`node.sessions.records.read_hits`), and those a peer released
are kept as UTF-8 in one buffer (`LabelBook`), never one Python object each.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence

import numpy as np

from node.data.identifiers import MAX_LABEL_CHARS
from node.errors import InvalidInput

__all__ = ["LABELS_PER_MESSAGE", "MAX_LABEL_CHARS", "ROWS_PER_READ", "ElementRows", "LabelBook"]

# Labels are at most 1,000 characters: 512 a message stays far below gRPC's 4 MiB cap.
LABELS_PER_MESSAGE = 512
# Matched positions whose records are read from the store at a time.
ROWS_PER_READ = 4096

ElementRows = Callable[[Sequence[int]], Sequence[tuple[str, str, str | None] | None]]
"""(ref, type, label) of element ids, None for one removed since (`Store.element_rows`)."""


class LabelBook:
    """The labels a peer released, by index: UTF-8 in one buffer, with each one's index."""

    def __init__(self) -> None:
        self._indices = array("q")
        self._ends = array("q")  # where each label's UTF-8 ends in _text
        self._text = bytearray()
        self._by_index: tuple[np.ndarray, np.ndarray] | None = None  # sorted indices, order
        self.count = 0

    def add(self, indices: Sequence[int], labels: Sequence[str], limit: int) -> None:
        """Adds released labels after checking them; `limit` bounds the indices."""
        if len(indices) != len(labels):
            raise InvalidInput(
                f"labels message has {len(indices)} indices but {len(labels)} labels",
                peer="a labels message needs one index per label",
            )
        for index, label in zip(indices, labels, strict=True):
            if not 0 <= index < limit:
                raise InvalidInput(
                    f"label index {index} is outside the {limit} elements sent",
                    peer="a label index is outside the elements sent",
                )
            if len(label) > MAX_LABEL_CHARS:
                raise InvalidInput(
                    f"a label is longer than {MAX_LABEL_CHARS} characters",
                    peer=f"a label is longer than {MAX_LABEL_CHARS} characters",
                )
        for index, label in zip(indices, labels, strict=True):
            self._indices.append(index)
            self._text += label.encode()
            self._ends.append(len(self._text))
        self._by_index = None
        self.count += len(labels)

    def get(self, index: int) -> str | None:
        """Returns the peer's label(s) for an index, joined, or None if none was released."""
        return self.get_many([index])[0]

    def get_many(self, indices: Sequence[int]) -> list[str | None]:
        """`get` of each index, looked up together (one search for all: a large session's
        hits ask for hundreds of thousands)."""
        if not self.count:
            return [None] * len(indices)
        if self._by_index is None:
            added = np.array(self._indices, dtype=np.int64)  # a copy: adds may follow
            order = np.argsort(added, kind="stable")  # an index's labels in arrival order
            self._by_index = (added[order], order)
        keys, order = self._by_index
        wanted = np.asarray(indices, dtype=np.int64)
        lows = np.searchsorted(keys, wanted, side="left")
        highs = np.searchsorted(keys, wanted, side="right")
        firsts = order[np.minimum(lows, len(order) - 1)].tolist()
        found: list[str | None] = []
        for low, high, first in zip(lows.tolist(), highs.tolist(), firsts, strict=True):
            if high - low == 1:  # the usual case: one label for the index
                found.append(self._label(first))
            elif high == low:
                found.append(None)
            else:
                labels = [self._label(int(i)) for i in order[low:high]]
                found.append("; ".join(dict.fromkeys(labels)))
        return found

    def _label(self, i: int) -> str:
        start = self._ends[i - 1] if i else 0
        return self._text[start : self._ends[i]].decode()
