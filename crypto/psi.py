"""Mutual ECDH-PSI parties: pure state machines over packed bytes (DESIGN §4).

Glossary
    x, y      the initiator's / responder's elements, already hashed into the
              group at ingest (H(x), H(y)), packed 32 bytes each
    a, b      the initiator's / responder's fresh session scalars
    x_a       H(x)^a;  x_ab = (H(x)^a)^b;  y_b = H(y)^b;  y_ba = (H(y)^b)^a
    tag(P)    the first TAG_SIZE bytes of P's encoding

Phases (I = `Initiator`, R = `Responder`; the transport carries the bytes):
    1. Hello: I declares |X| (`Initiator.size`, given to R by `Responder.read_hello`),
       R answers |Y| (`Responder.size`, given to I by `Initiator.read_hello_reply`).
    2. I -> R: x_a, shuffled                      `Initiator.blinded_chunks()`
    3. R -> I: tag(x_ab) in received order        `Responder.evaluate(chunk)`
                                                  -> `Initiator.read_evaluated(chunk)`
               (count: withheld until all arrived, then shuffled,
               from `Responder.evaluated_rest()`)
       R -> I: y_b, shuffled                      `Responder.blinded_chunks()`
                                                  -> `Initiator.read_blinded(chunk)`
    4. I: x matches iff tag(x_ab) is among tag(y_ba)
                                                  `Initiator.matches()` / `match_count()`
    5. mutual: I -> R tag(y_ba) in R's order      `Initiator.reveal_chunks()`
                                                  -> `Responder.read_reveal(chunk)`
       R: y matches iff tag(y_ba) is among tag(x_ab)   `Responder.matches()`

Leakage: each side learns the intersection (count: only its size) and the
peer's declared set size; nothing else under semi-honest behaviour.

Duplicates: each party dedupes its input; `size` is the number of distinct
elements, and `matches()` returns every input position whose element is in the
intersection (so duplicates of a matched element all match), each paired with
the matched element's index in R's sent order of y_b: both sides know that
index, so labels of matched records are exchanged by it.

Errors: `InvalidElement` for a point that fails validation or a chunk that is
not a whole number of elements or tags; `ProtocolError` for a message out of
order, more or fewer elements than declared, or a reveal in count mode.
"""

from __future__ import annotations

import enum
import secrets
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from random import Random
from typing import Self

import numpy as np

from crypto.batch import BatchRunner
from crypto.errors import InvalidElement, ProtocolError
from crypto.groups import ELEMENT_SIZE, TAG_SIZE, Group, split_packed, tags_of

__all__ = ["DEFAULT_CHUNK_ELEMENTS", "Initiator", "Mode", "PointSet", "Responder", "run_locally"]

# 4,096 elements = 128 KiB a message: far below gRPC's 4 MiB cap, large enough
# that per-message overhead vanishes.
DEFAULT_CHUNK_ELEMENTS = 4096
# Chunks multiplied ahead of the one being sent, so compute and transport overlap.
_LOOKAHEAD = 2


class Mode(enum.StrEnum):
    """What the initiator learns: the matches themselves, or only their number."""

    MUTUAL = "mutual"
    COUNT = "count"


class PointSet:
    """A party's input deduplicated: distinct points packed, and each one's input positions.

    Immutable, so one set serves every session of the same list (a responder
    builds it once per list version).
    """

    def __init__(self, points: bytes) -> None:
        self.unique, self.positions = _dedupe(points)

    def __len__(self) -> int:
        return len(self.positions)


class _Party:
    """State shared by both parties: the deduped set, the key, the shuffled order."""

    def __init__(
        self,
        group: Group,
        points: bytes | PointSet,
        mode: Mode,
        key: bytes,
        runner: BatchRunner | None,
        rng: Random | None,
        chunk_elements: int,
    ) -> None:
        self.group = group
        self.mode = Mode(mode)
        self._key = key
        self._runner = runner or BatchRunner()
        self._rng = rng or secrets.SystemRandom()
        self._chunk = chunk_elements * ELEMENT_SIZE
        point_set = points if isinstance(points, PointSet) else PointSet(points)
        self._unique, self._positions = point_set.unique, point_set.positions
        self.size = len(self._positions)
        self._order = _permutation(self.size, self._rng)

    @classmethod
    def with_new_key(
        cls,
        group: Group,
        points: bytes | PointSet,
        mode: Mode,
        *,
        runner: BatchRunner | None = None,
        rng: Random | None = None,
        chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    ) -> Self:
        """Creates a party with a fresh random session key."""
        rng = rng or secrets.SystemRandom()
        key = group.random_scalar(rng.randbytes)
        return cls(group, points, mode, key, runner, rng, chunk_elements)

    @classmethod
    def from_key(
        cls,
        group: Group,
        points: bytes | PointSet,
        mode: Mode,
        key: bytes,
        *,
        runner: BatchRunner | None = None,
        rng: Random | None = None,
        chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
    ) -> Self:
        """Creates a party with a given key; for deterministic tests only."""
        return cls(group, points, mode, key, runner, rng, chunk_elements)

    def blinded_chunks(self) -> Iterator[bytes]:
        """Yields this party's points multiplied by its key, shuffled, in chunks."""
        shuffled = _gathered(self._unique, ELEMENT_SIZE, self._order)
        pending: deque = deque()
        for start in range(0, len(shuffled), self._chunk):
            chunk = shuffled[start : start + self._chunk]
            pending.append(self._runner.submit_multiply(self.group.name, self._key, chunk))
            if len(pending) > _LOOKAHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class Initiator(_Party):
    """The party that asks: learns the intersection (or its size), reveals it in mutual mode."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.peer_size: int | None = None
        self._x_ab = bytearray()  # tag(x_ab), in the order R sent them
        self._y_ba = bytearray()  # tag(y_ba), in R's order
        # y_b chunks being multiplied: reading the next chunk does not wait for them.
        self._y_ba_pending: deque[Future[bytes]] = deque()
        self._y_b_received = 0
        self._drain_lock = threading.Lock()

    @property
    def has_all_evaluated(self) -> bool:
        """Whether every tag(x_ab) has arrived."""
        return len(self._x_ab) == self.size * TAG_SIZE

    @property
    def blinded_received(self) -> int:
        """How many y_b have arrived so far."""
        return self._y_b_received

    @property
    def has_all_blinded(self) -> bool:
        """Whether every y_b the responder declared has arrived (tag(y_ba) may be pending)."""
        return self.peer_size is not None and self._y_b_received == self.peer_size

    def read_hello_reply(self, peer_size: int) -> None:
        """Records the responder's declared set size."""
        if peer_size < 0:
            raise ProtocolError(f"responder declared a negative set size ({peer_size})")
        self.peer_size = peer_size

    def read_evaluated(self, chunk: bytes) -> None:
        """Reads tag(x_ab) from the responder."""
        if len(chunk) % TAG_SIZE:
            raise InvalidElement(
                f"evaluated chunk of {len(chunk)} bytes is not a whole number of "
                f"{TAG_SIZE}-byte tags"
            )
        if len(self._x_ab) + len(chunk) > self.size * TAG_SIZE:
            raise ProtocolError(f"responder returned more than the {self.size} elements sent")
        self._x_ab += chunk

    def read_blinded(self, chunk: bytes) -> None:
        """Reads y_b from the responder and computes tag(y_ba)."""
        if self.peer_size is None:
            raise ProtocolError("responder's elements arrived before its hello reply")
        count = split_packed(chunk, "responder's blinded chunk")
        if self._y_b_received + count > self.peer_size:
            raise ProtocolError(
                f"responder sent more than the {self.peer_size} elements it declared"
            )
        self._y_b_received += count
        self._y_ba_pending.append(self._runner.submit_multiply(self.group.name, self._key, chunk))
        self._drain(wait=False)

    def collect_blinded(self) -> None:
        """Waits for tag(y_ba) of every y_b read so far; raises InvalidElement for a bad y_b."""
        self._drain(wait=True)

    def _drain(self, wait: bool) -> None:
        """Appends finished tag(y_ba) in order; with `wait`, every pending one."""
        with self._drain_lock:
            pending = self._y_ba_pending
            while pending and (wait or pending[0].done()):
                self._y_ba += tags_of(pending.popleft().result())

    def matches(self) -> list[tuple[int, int]]:
        """Returns (input position, responder's index) for every input element it also holds."""
        if self.mode is not Mode.MUTUAL:
            raise ProtocolError("a count session reveals only the number of matches")
        y_index = {tag: j for j, tag in enumerate(_split_tags(self._complete_y_ba_tags()))}
        return sorted(
            (pos, y_index[tag])
            for j, tag in enumerate(_split_tags(self._complete_x_ab()))
            if tag in y_index
            for pos in self._positions[self._order[j]]
        )

    def match_count(self) -> int:
        """Returns the number of distinct elements both parties hold."""
        y_ba = set(_split_tags(self._complete_y_ba_tags()))
        return sum(tag in y_ba for tag in _split_tags(self._complete_x_ab()))

    def reveal_chunks(self) -> Iterator[bytes]:
        """Yields tag(y_ba) in the responder's order, so it learns its own matches."""
        if self.mode is not Mode.MUTUAL:
            raise ProtocolError("a count session reveals nothing to the responder")
        self._complete_y_ba_tags()
        step = self._chunk // ELEMENT_SIZE * TAG_SIZE
        for start in range(0, len(self._y_ba), step):
            yield bytes(self._y_ba[start : start + step])

    def _complete_x_ab(self) -> bytes:
        if len(self._x_ab) != self.size * TAG_SIZE:
            raise ProtocolError(
                f"responder evaluated {len(self._x_ab) // TAG_SIZE} of {self.size} elements"
            )
        return bytes(self._x_ab)

    def _complete_y_ba_tags(self) -> bytes:
        self._drain(wait=True)
        received = len(self._y_ba) // TAG_SIZE
        if self.peer_size is None or received != self.peer_size:
            raise ProtocolError(
                f"responder sent {received} of its {self.peer_size} declared elements"
            )
        return bytes(self._y_ba)


class Responder(_Party):
    """The party that answers: evaluates the initiator's set and sends its own."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.peer_size: int | None = None
        self._x_ab = bytearray()  # tag(x_ab), in the order I sent x_a
        self._y_ba = bytearray()  # tag(y_ba) revealed by I, in our order

    def read_hello(self, peer_size: int) -> None:
        """Records the initiator's declared set size."""
        if peer_size < 0:
            raise ProtocolError(f"initiator declared a negative set size ({peer_size})")
        self.peer_size = peer_size

    @property
    def has_all_blinded(self) -> bool:
        """Whether every x_a the initiator declared has arrived."""
        return self.peer_size is not None and len(self._x_ab) == self.peer_size * TAG_SIZE

    @property
    def has_all_revealed(self) -> bool:
        """Whether tag(y_ba) has arrived for every element we sent (mutual mode)."""
        return len(self._y_ba) == self.size * TAG_SIZE

    def evaluate(self, chunk: bytes) -> bytes:
        """Reads x_a; returns tag(x_ab) to send now (mutual) or b"" (count: held back)."""
        if self.peer_size is None:
            raise ProtocolError("initiator's elements arrived before its hello")
        count = split_packed(chunk, "initiator's blinded chunk")
        if len(self._x_ab) // TAG_SIZE + count > self.peer_size:
            raise ProtocolError(
                f"initiator sent more than the {self.peer_size} elements it declared"
            )
        tags = tags_of(self._runner.multiply(self.group.name, self._key, chunk))
        self._x_ab += tags
        return tags if self.mode is Mode.MUTUAL else b""

    def evaluated_rest(self) -> bytes:
        """Returns what `evaluate` held back: in count mode, every tag(x_ab), shuffled."""
        received = len(self._x_ab) // TAG_SIZE
        if received != self.peer_size:
            raise ProtocolError(
                f"initiator sent {received} of its {self.peer_size} declared elements"
            )
        if self.mode is Mode.MUTUAL:
            return b""
        count = len(self._x_ab) // TAG_SIZE
        return _gathered(bytes(self._x_ab), TAG_SIZE, _permutation(count, self._rng))

    def read_reveal(self, chunk: bytes) -> None:
        """Reads tag(y_ba) in our order from the initiator (mutual mode)."""
        if self.mode is not Mode.MUTUAL:
            raise ProtocolError("a count session has no reveal")
        if len(chunk) % TAG_SIZE:
            raise InvalidElement(
                f"reveal chunk of {len(chunk)} bytes is not a whole number of {TAG_SIZE}-byte tags"
            )
        if len(self._y_ba) + len(chunk) > self.size * TAG_SIZE:
            raise ProtocolError(f"initiator revealed more than our {self.size} elements")
        self._y_ba += chunk

    def matches(self) -> list[tuple[int, int]]:
        """Returns (input position, our sent index) for every input element the initiator holds."""
        if self.mode is not Mode.MUTUAL:
            raise ProtocolError("a count session reveals nothing to the responder")
        if len(self._y_ba) != self.size * TAG_SIZE:
            raise ProtocolError(
                f"initiator revealed {len(self._y_ba) // TAG_SIZE} of our {self.size} elements"
            )
        x_ab = set(_split_tags(bytes(self._x_ab)))
        return sorted(
            (pos, j)
            for j, tag in enumerate(_split_tags(bytes(self._y_ba)))
            if tag in x_ab
            for pos in self._positions[self._order[j]]
        )


def _dedupe(points: bytes) -> tuple[bytes, list[list[int]]]:
    """Returns the distinct points, packed in first-seen order, and each one's input positions."""
    split_packed(points, "input set")
    first: dict[bytes, int] = {}
    positions: list[list[int]] = []
    for pos, start in enumerate(range(0, len(points), ELEMENT_SIZE)):
        j = first.setdefault(points[start : start + ELEMENT_SIZE], len(positions))
        if j == len(positions):
            positions.append([pos])
        else:
            positions[j].append(pos)
    return b"".join(first), positions


def _permutation(n: int, rng: Random) -> np.ndarray:
    """A uniformly random permutation of range(n): indices sorted by 64 random bits each.

    One `randbytes` call instead of n `randbelow` calls (with `SystemRandom`, each
    call reads the OS generator), sorted as packed integers rather than Python
    objects: the same order as sorting the 8-byte strings, ties kept in index order.
    """
    keys = np.frombuffer(rng.randbytes(8 * n), dtype=">u8")
    return np.argsort(keys, kind="stable")


def _gathered(packed: bytes, size: int, order: np.ndarray) -> bytes:
    """The `size`-byte items of `packed` in `order`, packed again."""
    items = np.frombuffer(packed, dtype=np.uint8).reshape(-1, size)
    return items[order].tobytes()


def _split_tags(tags: bytes) -> list[bytes]:
    return [tags[i : i + TAG_SIZE] for i in range(0, len(tags), TAG_SIZE)]


def run_locally(initiator: Initiator, responder: Responder) -> None:
    """Carries every message between two parties in one process (tests, benchmarks)."""
    responder.read_hello(initiator.size)
    initiator.read_hello_reply(responder.size)
    for chunk in initiator.blinded_chunks():
        initiator.read_evaluated(responder.evaluate(chunk))
    initiator.read_evaluated(responder.evaluated_rest())
    for chunk in responder.blinded_chunks():
        initiator.read_blinded(chunk)
    if initiator.mode is Mode.MUTUAL:
        for chunk in initiator.reveal_chunks():
            responder.read_reveal(chunk)
