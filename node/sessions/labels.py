"""Labels of matched records, exchanged keyed by the matched element's index.

The index is the matched y_b's position in the order the responder sent it:
the one reference both sides of a mutual session share. Several records may
share an element, so one index may carry several labels.
"""

from __future__ import annotations

from collections.abc import Sequence

from node.data.identifiers import MAX_LABEL_CHARS
from node.errors import InvalidInput

__all__ = ["LABELS_PER_MESSAGE", "MAX_LABEL_CHARS", "LabelBook", "label_chunks"]

# Labels are at most 1,000 characters: 512 a message stays far below gRPC's 4 MiB cap.
LABELS_PER_MESSAGE = 512


class LabelBook:
    """The labels a peer released, by index."""

    def __init__(self) -> None:
        self._by_index: dict[int, list[str]] = {}
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
            self._by_index.setdefault(index, []).append(label)
        self.count += len(labels)

    def get(self, index: int) -> str | None:
        """Returns the peer's label(s) for an index, joined, or None if none was released."""
        labels = self._by_index.get(index)
        return "; ".join(dict.fromkeys(labels)) if labels else None

    @staticmethod
    def of_matches(
        matches: Sequence[tuple[int, int]], labels: Sequence[str | None]
    ) -> tuple[list[int], list[str]]:
        """Returns (indices, labels) to release for matched positions that have a label."""
        pairs = [(j, labels[pos]) for pos, j in matches if labels[pos]]
        return [j for j, _ in pairs], [label for _, label in pairs if label]


def label_chunks(
    indices: Sequence[int], labels: Sequence[str]
) -> list[tuple[list[int], list[str]]]:
    """Splits released labels into messages of at most LABELS_PER_MESSAGE."""
    return [
        (list(indices[i : i + LABELS_PER_MESSAGE]), list(labels[i : i + LABELS_PER_MESSAGE]))
        for i in range(0, len(indices), LABELS_PER_MESSAGE)
    ]
