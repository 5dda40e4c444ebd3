"""Between protobuf messages and the typed messages of `node.sessions`.

Every message from a peer is decoded here, once, from the bytes on the wire: a
message that is not valid protobuf (corrupt wire format, a string field that
is not UTF-8) is InvalidInput like any other fault, never a gRPC INTERNAL or
UNKNOWN; a hello or request becomes a bounded, checked `node.policy` request
(or raises the typed error of its first fault); the responder's messages
become `node.sessions.messages` types.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as Protobuf

from node.errors import InvalidInput, PeerError
from node.generated.blindmatch.v1 import matching_pb2 as pb
from node.policy import FetchRequest, ScreenQuery, SessionRequest
from node.sessions.messages import (
    Blinded,
    Evaluated,
    Hello,
    HelloReply,
    Labels,
    Message,
    Reveal,
    Summary,
)

__all__ = [
    "decode_fetch",
    "decode_initiator",
    "decode_responder",
    "decode_screen",
    "encode_fetch",
    "encode_screen",
    "encode_initiator",
    "encode_responder",
]

MODE_TO_WIRE = {"mutual": pb.MODE_MUTUAL, "count": pb.MODE_COUNT}
MODE_FROM_WIRE = {wire: mode for mode, wire in MODE_TO_WIRE.items()}
P = TypeVar("P", bound=Protobuf)


def _parsed(kind: type[P], data: bytes, what: str) -> P:
    """`data` parsed as a `kind` message, or InvalidInput naming `what` it should have been."""
    try:
        return kind.FromString(data)
    except DecodeError:
        text = f"a {what} could not be decoded: it is not a valid blindmatch.v1 message"
        raise InvalidInput(text, peer=text) from None


def decode_initiator(data: bytes) -> Message:
    """An initiator's message, as received, as a session message; raises the typed error of a
    bad one."""
    message = _parsed(pb.InitiatorMessage, data, "session message")
    kind = message.WhichOneof("body")
    if kind == "hello":
        hello = message.hello
        return Hello(
            SessionRequest.checked(
                protocol_version=hello.protocol_version,
                session_id=hello.session_id,
                suite=hello.suite,
                mode=MODE_FROM_WIRE.get(hello.mode, ""),
                list=hello.list,
                purpose=hello.purpose,
                set_size=hello.set_size,
                initiator_list=hello.initiator_list,
            )
        )
    if kind == "blinded":
        return Blinded(message.blinded.packed)
    if kind == "reveal":
        return Reveal(message.reveal.packed)
    if kind == "labels":
        return Labels(list(message.labels.index), list(message.labels.label))
    raise InvalidInput("an empty session message", peer="a session message must have a body")


def encode_responder(message: Message) -> pb.ResponderMessage:
    """A responder's session message on the wire."""
    if isinstance(message, HelloReply):
        reply = pb.HelloReply(set_size=message.set_size, list_kind=message.list_kind)
        return pb.ResponderMessage(hello_reply=reply)
    if isinstance(message, Blinded):
        return pb.ResponderMessage(blinded=pb.Elements(packed=message.packed))
    if isinstance(message, Evaluated):
        return pb.ResponderMessage(evaluated=pb.Tags(packed=message.packed))
    if isinstance(message, Labels):
        labels = pb.Labels(index=message.indices, label=message.labels)
        return pb.ResponderMessage(labels=labels)
    if isinstance(message, Summary):
        return pb.ResponderMessage(summary=pb.Summary(match_count=message.match_count))
    raise TypeError(f"a responder does not send {type(message).__name__}")


def encode_initiator(message: Message) -> pb.InitiatorMessage:
    """An initiator's session message on the wire."""
    if isinstance(message, Hello):
        r = message.request
        hello = pb.Hello(
            protocol_version=r.protocol_version,
            session_id=r.session_id,
            suite=r.suite,
            mode=MODE_TO_WIRE[r.mode],
            list=r.list,
            purpose=r.purpose,
            set_size=r.set_size,
            initiator_list=r.initiator_list,
        )
        return pb.InitiatorMessage(hello=hello)
    if isinstance(message, Blinded):
        return pb.InitiatorMessage(blinded=pb.Elements(packed=message.packed))
    if isinstance(message, Reveal):
        return pb.InitiatorMessage(reveal=pb.Tags(packed=message.packed))
    if isinstance(message, Labels):
        return pb.InitiatorMessage(labels=pb.Labels(index=message.indices, label=message.labels))
    raise TypeError(f"an initiator does not send {type(message).__name__}")


def decode_responder(message: pb.ResponderMessage, peer: str) -> Message:
    """A responder's message as a session message; raises PeerError for an empty one."""
    kind = message.WhichOneof("body")
    if kind == "hello_reply":
        return HelloReply(message.hello_reply.set_size, message.hello_reply.list_kind)
    if kind == "blinded":
        return Blinded(message.blinded.packed)
    if kind == "evaluated":
        return Evaluated(message.evaluated.packed)
    if kind == "labels":
        return Labels(list(message.labels.index), list(message.labels.label))
    if kind == "summary":
        return Summary(message.summary.match_count)
    raise PeerError(f"peer {peer} sent a session message without a body")


def encode_fetch(request: FetchRequest) -> pb.FetchEncodedListRequest:
    """A fetch request on the wire (the fields have the same names)."""
    return pb.FetchEncodedListRequest(**dataclasses.asdict(request))


def encode_screen(query: ScreenQuery) -> pb.ScreenRequest:
    """A screening batch on the wire (the fields have the same names)."""
    return pb.ScreenRequest(**dataclasses.asdict(query))


def decode_fetch(data: bytes) -> FetchRequest:
    """A fetch request, as received, decoded and checked."""
    request = _parsed(pb.FetchEncodedListRequest, data, "fetch request")
    return FetchRequest.checked(
        protocol_version=request.protocol_version, list=request.list, purpose=request.purpose
    )


def decode_screen(data: bytes) -> ScreenQuery:
    """A screening batch, as received, decoded and checked."""
    request = _parsed(pb.ScreenRequest, data, "screening request")
    return ScreenQuery.checked(
        protocol_version=request.protocol_version,
        session_id=request.session_id,
        list=request.list,
        epoch=request.epoch,
        list_version=request.list_version,
        purpose=request.purpose,
        blinded=request.blinded,
    )
