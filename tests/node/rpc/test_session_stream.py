"""The initiator's stream timer over a real mTLS gRPC call: idle_seconds, and the quiet a
responder is allowed while it records a large session's hits (`PeerStream.allow_quiet`).

The responder here is a real grpc.aio server with a node's federation certificate whose
Session handler reads the initiator's messages, then stays silent for a set time before
its summary: what a responder writing hundreds of thousands of hits looks like on the
wire.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from node.errors import Stalled
from node.generated.blindmatch.v1 import matching_pb2 as pb
from node.rpc.client import _SessionStream, open_channel
from node.rpc.wire import encode_responder
from node.sessions.messages import Blinded, Summary
from node.setup.config import NodeConfig
from tests.federation import Federation
from tests.node.rpc.peer_wire import SERVICE, federation

INITIATOR, RESPONDER = "customs-nl", "police-nl"
IDLE = 0.5  # the initiator's idle_seconds
SILENCE = 2.0  # how long the responder is quiet before its summary: 4 times IDLE


@pytest.fixture(scope="module")
def fed() -> Iterator[Federation]:
    with federation("stream") as fed:
        fed.add_node(INITIATOR)
        fed.add_node(RESPONDER)
        yield fed


async def _slow_responder(fed: Federation) -> tuple[grpc.aio.Server, str]:
    """A Session server with the responder's certificate: silent SILENCE s, then a summary."""
    tls = fed.node(RESPONDER) / "tls"

    async def session(requests: AsyncIterator[bytes], context: object) -> AsyncIterator[bytes]:
        async for _ in requests:  # everything the initiator sends, to its done_sending
            pass
        await asyncio.sleep(SILENCE)
        yield encode_responder(Summary(match_count=1)).SerializeToString()

    def same(data: bytes) -> bytes:
        return data

    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Session": grpc.stream_stream_rpc_method_handler(session, same, same)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    credentials = grpc.ssl_server_credentials(
        [((tls / "node.key").read_bytes(), (tls / "node.crt").read_bytes())],
        root_certificates=(tls / "ca.crt").read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, f"127.0.0.1:{port}"


async def _session(fed: Federation, allowance: float) -> tuple[object, float]:
    """One call: a message, done_sending, then `allowance` of quiet allowed, then a read."""
    server, address = await _slow_responder(fed)
    try:
        config = NodeConfig.load(fed.node(INITIATOR))
        async with open_channel(config, RESPONDER, address) as channel:
            session = channel.stream_stream(
                f"/{SERVICE}/Session",
                request_serializer=pb.InitiatorMessage.SerializeToString,
                response_deserializer=pb.ResponderMessage.FromString,
            )
            stream = _SessionStream(session(), RESPONDER, IDLE)
            await stream.send(Blinded(bytes(32)))
            if allowance:
                stream.allow_quiet(allowance)  # before done_sending: it must outlast it
            await stream.done_sending()
            began = time.monotonic()
            try:
                outcome: object = await stream.receive()
            except Stalled as exc:
                outcome = exc
            finally:
                stream.call.cancel()
            return outcome, time.monotonic() - began
    finally:
        await server.stop(None)


def test_a_responder_recording_within_its_allowance_is_waited_for(fed: Federation) -> None:
    outcome, waited = asyncio.run(_session(fed, allowance=3 * SILENCE))
    assert outcome == Summary(match_count=1)
    assert waited >= SILENCE - 0.1  # quiet for four idle timeouts, and not abandoned


def test_without_an_allowance_the_same_silence_is_a_stall(fed: Federation) -> None:
    outcome, waited = asyncio.run(_session(fed, allowance=0.0))
    assert isinstance(outcome, Stalled)
    assert f"peer {RESPONDER} sent nothing for" in str(outcome)
    assert "the session was abandoned" in str(outcome)
    assert waited < SILENCE  # given up after idle_seconds, before the summary came
