"""The initiator's side of a mutual or count session: our list, the crypto party, records.

`initiate_session` is the whole orchestration, over any `PeerStream`. Two
tasks share the stream: one sends (hello, x_a, then in mutual mode the reveal
once every y_b is in, then our released labels once the matches are known, read
from the store in the same pass that makes our hits, while the responder records),
the other reads (the hello reply, y_b, tag(x_ab), the peer's labels, the
summary). Blinding, transport and the peer's work overlap; CPU batches run on
the process pool and SQLite in threads. Per element, the session holds packed
arrays only (`crypto.psi`): our list is read as points and element ids, and
the ref, type and label of a matched record are read from the store when the
labels we release and the hits are made.

The session is recorded `running` before the first message; hits are stored
only after the responder's summary (it has stored its own), in one
transaction. Any failure — a refusal, a bad point or label, more elements than
declared, a stalled or vanished responder, Ctrl-C — records the session
`failed` with a human reason (`interrupted` for Ctrl-C) and raises a
`PeerError` naming the peer (or the cancellation, for the caller to report).

A record write, once begun, is seen to its end even if the session is
cancelled meanwhile (`node.sessions.blocking`): a session is never left `running`, nor
recorded both completed and failed. The responder must keep to the protocol:
one hello reply first, no more elements than it declared, labels only in a
mutual session.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

from crypto.errors import CryptoError
from crypto.groups import get_suite
from crypto.psi import Initiator, Matches, Mode
from node.errors import InvalidInput, PeerError
from node.policy import PROTOCOL_VERSION, SessionRequest, check_purpose
from node.sessions.blocking import settled, submit, succeeded
from node.sessions.labels import ElementRows, LabelBook
from node.sessions.messages import (
    Blinded,
    Evaluated,
    Hello,
    HelloReply,
    Labels,
    PeerStream,
    Reveal,
    Summary,
)
from node.sessions.records import HitTable, SessionRecord, describe, read_hits
from node.sessions.results import MatchResult, Progress
from node.setup.context import NodeContext

__all__ = ["initiate_session"]

log = logging.getLogger("blindmatch.sessions")
T = TypeVar("T")
# Chunks of y_b being multiplied before reading more waits for them: what a responder sends
# faster than our pool multiplies waits in its stream, not in our memory.
_PENDING_CHUNKS = 8
# The responder records its hits before its summary and sends nothing meanwhile: about 10 µs
# a match measured (1M x 1M), allowed 10 times over beyond the idle timeout.
_RECORDING_SECONDS_PER_MATCH = 1e-4
# Before its hello reply, the responder reads and dedupes its list unless it has it cached:
# about 2 µs an element measured (10^6 and 10^7), allowed 5 times over for as many elements
# as it may declare (its max_set_size).
_LOADING_SECONDS_PER_ELEMENT = 1e-5


async def initiate_session(
    node: NodeContext,
    stream: PeerStream,
    peer: str,
    list_name: str,
    peer_list: str,
    mode: str,
    purpose: str,
    operator: str,
    progress: Progress | None = None,
) -> MatchResult:
    """Runs one session of our `list_name` against `peer`'s `peer_list`; records and returns it."""
    policy = node.config.peer(peer)
    check_purpose(purpose)
    suite = node.config.suite
    # Read, dedupe and shuffle: O(n), off the loop.
    element_ids, party = await asyncio.to_thread(_load, node, list_name, suite, Mode(mode))
    request = SessionRequest(
        protocol_version=PROTOCOL_VERSION,
        session_id=secrets.token_hex(16),
        suite=suite,
        mode=mode,
        list=peer_list,
        purpose=purpose,
        set_size=party.size,
        initiator_list=list_name,
    )
    record = SessionRecord(
        node,
        session_id=request.session_id,
        peer=peer,
        role="initiator",
        mode=mode,
        suite=suite,
        list=list_name,
        peer_list=peer_list,
        purpose=purpose,
        operator=operator,
    )

    def rows(ids: Sequence[int]) -> list[tuple[str, str, str | None] | None]:
        return node.store().element_rows(ids)  # the calling thread's connection

    talk = _Talk(
        party, request, element_ids, rows, policy.release_labels, policy.max_set_size, peer
    )
    talk.progress = progress
    starting: asyncio.Future[None] | None = None

    def finish(matches: Matches) -> int:
        mutual = party.mode is Mode.MUTUAL  # each matched peer index is one shared element
        match_count = matches.shared if mutual else party.match_count()
        record.complete(
            match_count,
            party.peer_size,
            talk.hits,
            labels_sent=talk.labels_sent,
            labels_received=talk.peer_labels.count,
        )
        return match_count

    try:
        starting = submit(record.start, party.size)
        await settled(starting)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(talk.send_all(stream))
                tasks.create_task(talk.read_all(stream))
        except BaseExceptionGroup as group:
            raise _first(group) from None
        match_count = await settled(submit(finish, await talk.matches()))
    except BaseException as exc:
        if succeeded(starting):  # else nothing is recorded yet; a no-op once completed
            await _record_failure(record, exc, talk.labels_sent)
        if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
            raise
        if isinstance(exc, CryptoError | InvalidInput):  # the peer's messages were unusable
            raise PeerError(f"session with {peer} failed: {exc}") from None
        raise
    return MatchResult(
        session_id=request.session_id,
        peer=peer,
        mode=mode,
        suite=suite,
        local_count=party.size,
        peer_count=party.peer_size or 0,
        match_count=match_count,
        matches=talk.hits,
    )


def _load(
    node: NodeContext, list_name: str, suite: str, mode: Mode
) -> tuple[np.ndarray, Initiator]:
    """Our list's element ids, and its points deduplicated and shuffled into a party (blocking)."""
    points = node.store().list_points(list_name, suite)
    party = Initiator.with_new_key(get_suite(suite), points.points, mode, runner=node.runner)
    return points.element_ids, party


async def _record_failure(record: SessionRecord, exc: BaseException, labels_sent: int) -> None:
    """Records the session failed because of `exc`; a failure to record it is only logged."""
    try:
        await settled(submit(record.fail, describe(exc), labels_sent=labels_sent))
    except Exception as write_error:  # the session's own error is the one to report
        log.warning(
            "session %s with %s could not be recorded failed: %s",
            record.session_id,
            record.peer,
            describe(write_error),
        )


def _kind(message: object) -> str:
    """A message's kind as the protocol names it (HelloReply -> 'hello reply')."""
    name = type(message).__name__
    return "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()


def _first(group: BaseExceptionGroup) -> BaseException:
    """The error that ended a task group: a cause rather than the cancellations it caused."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]


class _Talk:
    """Both directions of one session's stream, meeting through two events."""

    def __init__(
        self,
        party: Initiator,
        request: SessionRequest,
        element_ids: np.ndarray,
        rows: ElementRows,
        release_labels: bool,
        max_peer_size: int,
        peer: str,
    ) -> None:
        self.party = party
        self.request = request
        self.element_ids = element_ids
        self.rows = rows
        self.release_labels = release_labels
        self.max_peer_size = max_peer_size
        self.peer = peer
        self.peer_labels = LabelBook()
        self.hits = HitTable(self.peer_labels)  # made once the matches are known
        self.labels_sent = 0
        self.summary: Summary | None = None
        self.progress: Progress | None = None
        self._accepted = asyncio.Event()  # the hello reply is in: x_a can go
        self._all_blinded = asyncio.Event()  # every y_b read: the reveal can go
        self._all_evaluated = asyncio.Event()  # matches known: the labels can go
        self._matches: Matches | None = None

    async def matches(self) -> Matches:
        """Our matched (position, peer index) pairs, computed once (none in count mode)."""
        if self._matches is None:
            mutual = self.party.mode is Mode.MUTUAL
            self._matches = (
                await asyncio.to_thread(self.party.matches) if mutual else Matches.none()
            )
        return self._matches

    async def send_all(self, stream: PeerStream) -> None:
        party = self.party
        await stream.send(Hello(self.request))
        if not self._accepted.is_set():  # the hello is out: the responder may load its list
            stream.allow_quiet(self.max_peer_size * _LOADING_SECONDS_PER_ELEMENT)
        chunks = party.blinded_chunks()
        # x_a goes out only once the responder has accepted: a refusal then ends the call
        # before we write into it (grpc.aio reports a write into a call the server has just
        # ended as INTERNAL instead of the server's status: grpc/grpc#36066). The first chunks
        # are multiplied meanwhile.
        first = asyncio.ensure_future(asyncio.to_thread(next, chunks, None))
        try:
            await self._accepted.wait()
        finally:
            if not self._accepted.is_set():
                first.cancel()
        chunk = await first
        sent = 0
        while chunk is not None:
            await stream.send(Blinded(chunk))
            sent += len(chunk) // 32
            if self.progress:
                self.progress("sent", sent, party.size)
            chunk = await asyncio.to_thread(next, chunks, None)
        quiet = 0.0  # how long the responder may then be busy recording (mutual mode)
        if party.mode is Mode.MUTUAL:
            await self._all_blinded.wait()
            for reveal in party.reveal_chunks():
                await stream.send(Reveal(reveal))
            await self._all_evaluated.wait()
            matches = await self.matches()  # now, while the responder records its side
            party.forget_tags()  # the reveal went out before: the rest needs only the matches
            messages = read_hits(matches, self.element_ids, self.rows, self.hits)
            while (message := await asyncio.to_thread(next, messages, None)) is not None:
                if self.release_labels:
                    await stream.send(Labels(*message))
                    self.labels_sent += len(message[0])
            quiet = len(matches) * _RECORDING_SECONDS_PER_MATCH
        await stream.done_sending()
        stream.allow_quiet(quiet)  # what is left to read: its labels, then its summary

    async def read_all(self, stream: PeerStream) -> None:
        party = self.party
        while (message := await stream.receive()) is not None:
            if isinstance(message, HelloReply):
                stream.allow_quiet(0.0)  # its list is loaded: from now on it answers at once
                self._check_hello_reply(message)
                party.read_hello_reply(message.set_size)
                self._accepted.set()
            elif party.peer_size is None:
                raise PeerError(
                    f"peer {self.peer} sent a {_kind(message)} message before its hello reply"
                )
            elif isinstance(message, Blinded):
                party.read_blinded(message.packed)
                if party.blinded_pending > _PENDING_CHUNKS:
                    await asyncio.to_thread(party.collect_blinded, _PENDING_CHUNKS // 2)
                if self.progress:
                    self.progress("received", party.blinded_received, party.peer_size)
            elif isinstance(message, Evaluated):
                party.read_evaluated(message.packed)
            elif isinstance(message, Labels) and party.mode is Mode.MUTUAL:
                # Bounded like the set itself: what a responder may send is limited.
                if self.peer_labels.count + len(message.labels) > self.max_peer_size:
                    raise PeerError(
                        f"peer {self.peer} sent more labels than its max_set_size of "
                        f"{self.max_peer_size:,}"
                    )
                self.peer_labels.add(message.indices, message.labels, party.peer_size or 0)
            elif isinstance(message, Summary):
                self.summary = message
            else:
                raise PeerError(
                    f"peer {self.peer} sent a {_kind(message)} message, which has no place in a "
                    f"{party.mode} session"
                )
            if party.has_all_blinded and not self._all_blinded.is_set():
                await asyncio.to_thread(party.collect_blinded)  # a bad y_b fails here
                self._all_blinded.set()
            if self._all_blinded.is_set() and party.has_all_evaluated:
                self._all_evaluated.set()
        if self.summary is None:
            raise PeerError(f"peer {self.peer} ended the session without a summary")

    def _check_hello_reply(self, reply: HelloReply) -> None:
        if self.party.peer_size is not None:
            raise PeerError(f"peer {self.peer} sent a second hello reply")
        if reply.set_size > self.max_peer_size:
            raise PeerError(
                f"peer {self.peer} declared {reply.set_size:,} elements, more than its "
                f"max_set_size of {self.max_peer_size:,}; if that is expected, raise it with "
                f"'blindmatch peer add NODE_DIR --agency {self.peer} ... --max-set-size N'"
            )
