"""The initiator's gRPC transports: an mTLS channel to a peer, a session stream, screening calls.

`match` is what `blindmatch match` runs: it opens the channel and gives the
orchestration in `node.sessions` a transport — `_SessionStream` for mutual and
count sessions, `GrpcScreening` for screening. Every call has a deadline and
every read and write an idle timeout; a peer's refusal becomes a `PeerError`
(or `StaleEpoch`) through `node.rpc.status.error_from_rpc`.

Where the node installed a federation CRL, `match` first reads the peer's
certificate with a TLS handshake of its own (`node.rpc.probe`) and refuses,
audited, to start anything with a peer whose certificate the CRL revokes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc

from node.errors import PeerError, Stalled
from node.generated.blindmatch.v1 import matching_pb2_grpc as pb_grpc
from node.policy import FetchRequest, ScreenQuery, check_purpose
from node.rpc.probe import peer_certificate
from node.rpc.status import error_from_rpc
from node.rpc.wire import decode_responder, encode_fetch, encode_initiator, encode_screen
from node.sessions.blocking import settled, submit
from node.sessions.messages import Message
from node.sessions.mutual_initiator import initiate_session
from node.sessions.records import audit_refusal, describe
from node.sessions.results import MatchResult, Progress
from node.sessions.screen_initiator import run_screen
from node.sessions.screen_responder import EncodedHeader
from node.setup import pki
from node.setup.config import NodeConfig
from node.setup.context import NodeContext

__all__ = ["GrpcScreening", "match", "open_channel"]

CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]
PROBE_SECONDS = 10.0
"""How long the handshake that reads a peer's certificate (for the CRL check) may take."""


def open_channel(config: NodeConfig, peer: str, address: str) -> grpc.aio.Channel:
    """Opens an mTLS channel to `peer`, whose certificate must name that agency."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=config.ca_cert.read_bytes(),
        private_key=config.tls_key.read_bytes(),
        certificate_chain=config.tls_cert.read_bytes(),
    )
    # The responder's certificate carries its agency id as a DNS name: checking
    # it against the peer we mean stops another federation member answering.
    options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", peer)]
    return grpc.aio.secure_channel(address, credentials, options=options)


async def match(
    node: NodeContext,
    peer: str,
    list_name: str,
    peer_list: str,
    mode: str,
    purpose: str,
    operator: str,
    timeout: float = 600.0,
    progress: Progress | None = None,
) -> MatchResult:
    """Runs one session (mutual, count or screen) with `peer` and records it."""
    policy = node.config.peer(peer)
    pki.require_certificate(node.config)
    check_purpose(purpose)
    refusal = {
        "operator": operator,
        "peer": peer,
        "role": "initiator",
        "purpose": purpose,
        "list": list_name,
        "peer_list": peer_list,
        "mode": mode,
    }
    event = "screen.refused" if mode == "screen" else "session.refused"
    await _refuse_revoked_peer(
        node, peer, policy.address, min(timeout, PROBE_SECONDS), event, refusal
    )
    idle = float(node.config.idle_seconds)
    async with open_channel(node.config, peer, policy.address) as channel:
        stub = pb_grpc.MatchingStub(channel)
        if mode == "screen":
            transport = GrpcScreening(stub, peer, timeout, idle)
            return await run_screen(
                node, transport, peer, list_name, peer_list, purpose, operator, progress
            )
        call = stub.Session(timeout=timeout)
        try:
            stream = _SessionStream(call, peer, idle)
            return await initiate_session(
                node, stream, peer, list_name, peer_list, mode, purpose, operator, progress
            )
        finally:
            call.cancel()  # no-op once the call has ended


async def _refuse_revoked_peer(
    node: NodeContext,
    peer: str,
    address: str,
    timeout: float,
    event: str,
    fields: Mapping[str, object],
) -> None:
    """Raises an audited PeerError if the installed CRL revokes the certificate `peer` presents.

    Without a CRL there is nothing to check and no handshake. A peer whose
    certificate cannot be read is refused too: the check must not be skipped.
    """
    revocations = await asyncio.to_thread(pki.RevocationList.load, node.config.crl)
    if not revocations.installed:
        return
    try:
        certificate = await peer_certificate(node.config, peer, address, timeout)
        serial = certificate.serial_number
        revocation = await asyncio.to_thread(revocations.lookup_blocking, serial)
        if revocation is not None:
            raise PeerError(
                f"peer {peer}'s certificate (serial {pki.serial_text(serial)}) is revoked by the "
                f"federation CRL installed {revocation.installed_at:%Y-%m-%d %H:%M} UTC; the "
                "session was not started"
            )
    except PeerError as exc:
        await settled(submit(audit_refusal, node, event, fields, describe(exc)))
        raise


class _SessionStream:
    """A Session call as `node.sessions` sees it, aborted when it makes no progress.

    Two tasks use it at once (one sends, one reads). A send held back by flow
    control while the responder streams y_b to us is waiting, not stalled: the
    stream stalls only when *neither* direction has moved for the idle timeout.
    """

    def __init__(self, call: Any, peer: str, idle_seconds: float) -> None:
        self.call = call
        self.peer = peer
        self.idle = idle_seconds
        self.allowance = 0.0  # quiet allowed beyond `idle` (`allow_quiet`)
        self.last_progress = asyncio.get_running_loop().time()

    async def receive(self) -> Message | None:
        message = await self._bounded(self.call.read(), "sent")
        if message is grpc.aio.EOF:
            await self._raise_status()
            return None
        return decode_responder(message, self.peer)

    async def send(self, message: Message) -> None:
        await self._bounded(self.call.write(encode_initiator(message)), "read")

    async def done_sending(self) -> None:
        await self._bounded(self.call.done_writing(), "read")

    def allow_quiet(self, seconds: float) -> None:
        self.allowance = max(0.0, seconds)

    async def _bounded(self, step: Any, verb: str) -> Any:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(step)
        try:
            while not task.done():
                quiet = loop.time() - self.last_progress
                limit = self.idle + self.allowance  # read each time: it may grow meanwhile
                if quiet >= limit:
                    raise Stalled(
                        f"peer {self.peer} {verb} nothing for {limit:.0f} s (idle_seconds"
                        f"{' and the time its records take' if self.allowance else ''}); "
                        "the session was abandoned"
                    )
                await asyncio.wait({task}, timeout=limit - quiet)
            result = task.result()
            self.last_progress = loop.time()
            return result
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, self.peer) from None
        except asyncio.InvalidStateError:  # written after the call ended: say why it ended
            await self._raise_status()
            raise PeerError(f"peer {self.peer} ended the call") from None
        finally:
            task.cancel()  # no-op once done

    async def _raise_status(self) -> None:
        code = await self.call.code()
        if code is not grpc.StatusCode.OK:
            raise error_from_rpc(
                grpc.aio.AioRpcError(
                    code,
                    await self.call.initial_metadata(),
                    await self.call.trailing_metadata(),
                    await self.call.details(),
                ),
                self.peer,
            )


class GrpcScreening:
    """The screening calls to `peer` on one channel, each with a deadline."""

    def __init__(self, stub: Any, peer: str, timeout: float, idle_seconds: float) -> None:
        self.stub = stub
        self.peer = peer
        self.timeout = timeout
        self.idle = idle_seconds

    async def fetch(
        self, request: FetchRequest
    ) -> AsyncIterator[tuple[EncodedHeader, bytes, list[bytes]]]:
        call = self.stub.FetchEncodedList(encode_fetch(request), timeout=self.timeout)
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(call.read(), self.idle)
                except TimeoutError:
                    raise Stalled(
                        f"peer {self.peer} sent nothing for {self.idle:.0f} s during a fetch"
                    ) from None
                if chunk is grpc.aio.EOF:
                    return
                header = EncodedHeader(
                    chunk.epoch,
                    chunk.public_key,
                    chunk.list_version,
                    chunk.list_kind,
                    chunk.total,
                )
                yield header, chunk.tags, list(chunk.sealed_labels)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, self.peer) from None
        finally:
            call.cancel()

    async def screen(self, query: ScreenQuery) -> tuple[bytes, bytes]:
        try:
            # A batch takes well under a second: a responder silent for the idle time has stalled.
            deadline = min(self.timeout, self.idle)
            response = await self.stub.Screen(encode_screen(query), timeout=deadline)
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc(exc, self.peer) from None
        return response.evaluated, response.proof
