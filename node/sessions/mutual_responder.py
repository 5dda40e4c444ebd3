"""The responder's side of a mutual or count session: policy, the crypto party, records.

`answer_session` is the whole orchestration, over any `PeerStream`:

1. Read the hello (decoded and bounded by the transport), authorise it and take
   a slot (`Answering.admit`), check the declared size and the hourly rate of
   sessions answered for this peer, record the session `running`, reply.
2. Send y_b only once the first x_a chunk arrives (or at once if the initiator's
   set is empty): a peer that says hello and stalls costs no multiplication.
3. Evaluate each x_a chunk (mutual: tags back at once; count: all at the end,
   shuffled); read the reveal, then send released labels; read the peer's.
4. When the initiator finishes sending: record the session, its hits and
   disclosures in one transaction, then send the summary.

A refusal before step 1 ends is audited `session.refused`; any failure after it
(a bad message, a stall, the peer gone, the node stopping) records the session
`failed` with a human reason. CPU batches run on the process pool and SQLite
in threads: the event loop never waits. What records the session (running,
completed or failed) is seen to its end (`node.sessions.blocking`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import Sequence

from crypto.errors import ProtocolError
from crypto.groups import TAG_SIZE, get_suite
from crypto.psi import DEFAULT_CHUNK_ELEMENTS, Matches, Mode, Responder
from node.errors import InvalidInput
from node.policy import SessionRequest, check_rate, check_set_size
from node.sessions.answering import Answering, SharedList
from node.sessions.blocking import settled, submit, succeeded
from node.sessions.labels import LabelBook
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
from node.setup.config import PeerPolicy

__all__ = ["answer_session"]

# A responder's call is cancelled by gRPC when the initiator cancels it or its connection
# drops, or when this node stops past its grace period.
_PEER_GONE = "cancelled: the initiator cancelled or disconnected, or this node was stopping"


async def answer_session(answering: Answering, peer: str, stream: PeerStream) -> None:
    """Answers one session from `peer` on `stream`, from its hello to its summary."""
    fields: dict[str, object] = {"peer": peer}
    record: SessionRecord | None = None
    accepting: asyncio.Future[tuple[SharedList, SessionRecord]] | None = None
    try:
        hello = await stream.receive()
        if hello is None:
            text = (
                "the stream ended before a hello arrived: none was sent, or a message was over "
                "the size limit"
            )
            raise InvalidInput(text, peer=text)
        if not isinstance(hello, Hello):
            text = "a session must open with a hello message"
            raise InvalidInput(text, peer=text)
        request = hello.request
        fields.update(request.audit_fields())
        with answering.admit(peer, request.mode, request.list) as policy:
            check_set_size(answering.node.config, policy, request.set_size)
            accepting = submit(_accept, answering, policy, request)
            shared, started = await settled(accepting)
            record = started
            await _Answer(answering, policy, request, shared, started, stream).run()
    except BaseException as exc:
        if record is None and accepting is not None and succeeded(accepting):
            record = accepting.result()[1]  # cancelled after the session was recorded running
        if record is None:
            await answering.refused("session.refused", fields, exc)
        else:
            reason = _PEER_GONE if isinstance(exc, asyncio.CancelledError) else describe(exc)
            await settled(submit(record.fail, reason))
        raise


def _accept(
    answering: Answering, policy: PeerPolicy, request: SessionRequest
) -> tuple[SharedList, SessionRecord]:
    """Loads the list, checks the hourly rate and records the session running (blocking)."""
    node = answering.node
    shared = answering.lists.get_blocking(node, request.list, request.suite)
    now = node.now()
    hour_ago = (now - dt.timedelta(hours=1)).isoformat(timespec="seconds")
    recent, earliest = node.store().sessions_since(policy.agency, "responder", hour_ago)
    check_rate(node.config, policy, recent, earliest, now)
    record = SessionRecord(
        node,
        session_id=request.session_id,
        peer=policy.agency,
        role="responder",
        mode=request.mode,
        suite=request.suite,
        list=request.list,
        peer_list=request.initiator_list,
        purpose=request.purpose,
        operator=f"peer:{policy.agency}",
    )
    record.start(local_count=len(shared.point_set), peer_count=request.set_size)
    return shared, record


class _Answer:
    """Steps 1-4 once the session is recorded."""

    def __init__(
        self,
        answering: Answering,
        policy: PeerPolicy,
        request: SessionRequest,
        shared: SharedList,
        record: SessionRecord,
        stream: PeerStream,
    ) -> None:
        self.node = answering.node
        self.policy = policy
        self.request = request
        self.shared = shared
        self.record = record
        self.stream = stream
        self.party = Responder.with_new_key(
            get_suite(request.suite),
            shared.point_set,
            Mode(request.mode),
            runner=self.node.runner,
            rng=secrets.SystemRandom(),
        )
        self.party.read_hello(request.set_size)
        self.peer_labels = LabelBook()
        self.matches = Matches.none()
        self.hits = HitTable(self.peer_labels)  # made once the matches are known
        self.labels_sent = 0
        self.y_b_sent = False

    async def run(self) -> None:
        party, stream = self.party, self.stream
        mutual = party.mode is Mode.MUTUAL
        await stream.send(HelloReply(party.size, self.shared.kind))
        if party.has_all_blinded:  # the initiator's set is empty: nothing to wait for
            await self._send_y_b()
            await self._send_evaluated(party.evaluated_rest())
        if mutual and party.has_all_revealed:  # our set is empty
            await self._matched()
        while (message := await stream.receive()) is not None:
            if isinstance(message, Blinded):
                await self._send_y_b()
                was_complete = party.has_all_blinded
                await self._send_evaluated(await asyncio.to_thread(party.evaluate, message.packed))
                if party.has_all_blinded and not was_complete:
                    await self._send_evaluated(party.evaluated_rest())
            elif isinstance(message, Reveal) and mutual:
                party.read_reveal(message.packed)
                if party.has_all_revealed:
                    await self._matched()
            elif isinstance(message, Labels) and mutual:
                # At most one label per element the initiator declared: what it may send is
                # bounded, whatever it sends.
                if self.peer_labels.count + len(message.labels) > self.request.set_size:
                    text = "more labels than the elements the initiator declared"
                    raise InvalidInput(text, peer=text)
                self.peer_labels.add(message.indices, message.labels, limit=party.size)
            else:
                raise InvalidInput(
                    f"unexpected {type(message).__name__.lower()} message in a {party.mode} "
                    "session",
                    peer=f"unexpected message in a {party.mode} session",
                )
        if not party.has_all_blinded or (mutual and not party.has_all_revealed):
            raise ProtocolError("the initiator ended the session before sending all it declared")
        await self._finish()

    async def _send_y_b(self) -> None:
        """y_b for the initiator, once; chunks multiplied ahead on the pool."""
        if self.y_b_sent:
            return
        self.y_b_sent = True
        chunks = self.party.blinded_chunks()
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            await self.stream.send(Blinded(chunk))

    async def _send_evaluated(self, tags: bytes) -> None:
        step = DEFAULT_CHUNK_ELEMENTS * TAG_SIZE  # a count session's tags come all at once
        for start in range(0, len(tags), step):
            await self.stream.send(Evaluated(tags[start : start + step]))

    async def _matched(self) -> None:
        """The reveal is complete: our matches are known; our hits are read from the store, and
        their labels released as they are read if policy says so."""
        self.matches = await asyncio.to_thread(self.party.matches)
        messages = read_hits(self.matches, self.shared.points.element_ids, self._rows, self.hits)
        while (message := await asyncio.to_thread(next, messages, None)) is not None:
            if self.policy.release_labels:
                await self.stream.send(Labels(*message))
                self.labels_sent += len(message[0])

    def _rows(self, ids: Sequence[int]) -> list[tuple[str, str, str | None] | None]:
        return self.node.store().element_rows(ids)  # the calling thread's connection

    async def _finish(self) -> None:
        if self.party.mode is Mode.MUTUAL:  # everything has arrived: only the matches are needed
            self.party.forget_tags()
        match_count = self.matches.shared

        def complete() -> None:  # O(matches) in Python: off the loop
            self.record.complete(
                match_count,
                self.request.set_size,
                self.hits,
                labels_sent=self.labels_sent,
                labels_received=self.peer_labels.count,
            )

        await settled(submit(complete))
        await self.stream.send(Summary(match_count))
