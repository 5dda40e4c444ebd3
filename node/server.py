"""`blindmatch serve`: the node's gRPC server, mutual TLS, health, reflection, shutdown.

The servicer only translates between protobuf messages and `AnsweredSession`;
errors become status codes in `node.status`. The batch process pool is started
before any gRPC object exists (forkserver, warmed up), and with `--workers N`
the N server processes are forked before gRPC starts too and share the port
through SO_REUSEPORT: sessions are independent, any worker can take one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from crypto.batch import BatchRunner, new_process_pool
from crypto.groups import TAG_SIZE
from crypto.psi import DEFAULT_CHUNK_ELEMENTS, Mode
from node import pki, screening
from node.context import NodeContext
from node.errors import InvalidInput, UnknownPeer
from node.generated.blindmatch.v1 import matching_pb2 as pb
from node.generated.blindmatch.v1 import matching_pb2_grpc as pb_grpc
from node.policy import SessionRequest
from node.responder import AnsweredSession
from node.status import status_code

__all__ = ["LABELS_PER_MESSAGE", "MODE_FROM_WIRE", "MODE_TO_WIRE", "serve"]

log = logging.getLogger("blindmatch.server")

MODE_TO_WIRE = {Mode.MUTUAL: pb.MODE_MUTUAL, Mode.COUNT: pb.MODE_COUNT}
MODE_FROM_WIRE = {wire: mode for mode, wire in MODE_TO_WIRE.items()}
# Labels are at most 1,000 characters: 512 a message stays far below the 4 MiB cap.
LABELS_PER_MESSAGE = 512
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Matching"].full_name
GRACE_SECONDS = 30.0
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
]


class MatchingServicer(pb_grpc.MatchingServicer):
    """Answers sessions: messages in, `AnsweredSession` calls, messages out."""

    def __init__(self, node: NodeContext) -> None:
        self.node = node

    def Session(  # noqa: N802 (gRPC's method name)
        self, request_iterator: Iterator[pb.InitiatorMessage], context: grpc.ServicerContext
    ) -> Iterator[pb.ResponderMessage]:
        store = self.node.open_store()
        session: AnsweredSession | None = None
        try:
            peer = _peer_agency(context)
            first = next(request_iterator, None)
            if first is None or first.WhichOneof("body") != "hello":
                raise InvalidInput("a session must open with a hello message")
            session = AnsweredSession(self.node, store, peer, _session_request(first.hello))
            yield pb.ResponderMessage(
                hello_reply=pb.HelloReply(set_size=session.size, list_kind=session.list.kind)
            )
            for chunk in session.blinded_chunks():
                yield pb.ResponderMessage(blinded=pb.Elements(packed=chunk))
            yield from self._answer(session, request_iterator)
        except (GeneratorExit, grpc.RpcError) as exc:  # the initiator cancelled or vanished
            if session is not None:
                _quietly(session.fail, exc)
            if isinstance(exc, GeneratorExit):
                raise
        except Exception as exc:
            if session is not None:
                _quietly(session.fail, exc)
            _abort(context, exc)
        finally:
            store.close()

    def _answer(
        self, session: AnsweredSession, requests: Iterator[pb.InitiatorMessage]
    ) -> Iterator[pb.ResponderMessage]:
        party = session.party
        if party.has_all_blinded:  # the initiator's set is empty
            yield from _evaluated(session.evaluated_rest())
        for message in requests:
            kind = message.WhichOneof("body")
            if kind == "blinded":
                was_complete = party.has_all_blinded
                yield from _evaluated(session.evaluate(message.blinded.packed))
                if party.has_all_blinded and not was_complete:
                    yield from _evaluated(session.evaluated_rest())
            elif kind == "reveal" and party.mode is Mode.MUTUAL:
                session.read_reveal(message.reveal.packed)
                if party.has_all_revealed:
                    yield from _labels(*session.released_labels())
            elif kind == "labels" and party.mode is Mode.MUTUAL:
                session.read_labels(list(message.labels.index), list(message.labels.label))
            else:
                raise InvalidInput(
                    f"unexpected {kind or 'empty'} message in a {party.mode} session"
                )
        if party.mode is Mode.MUTUAL and party.size == 0:
            yield from _labels(*session.released_labels())
        match_count = session.finish()
        yield pb.ResponderMessage(summary=pb.Summary(match_count=match_count))

    # -- screening (DESIGN §4): the work and the policy are in node.screening ------------------

    def FetchEncodedList(  # noqa: N802 (gRPC's method name)
        self, request: pb.FetchEncodedListRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.EncodedListChunk]:
        store = self.node.open_store()
        try:
            encoded = screening.answer_fetch(
                self.node,
                store,
                _peer_agency(context),
                screening.FetchRequest(request.protocol_version, request.list, request.purpose),
            )
            header: dict[str, Any] = {
                "epoch": encoded.epoch,
                "public_key": encoded.public_key,
                "list_version": encoded.list_version,
                "total": encoded.total,
                "list_kind": encoded.list_kind,
            }
            sent = False
            for tags, sealed in encoded.chunks:
                yield pb.EncodedListChunk(tags=tags, sealed_labels=sealed, **header)
                sent = True
            if not sent:  # an empty list still tells its epoch and key
                yield pb.EncodedListChunk(**header)
        except Exception as exc:
            _abort(context, exc)
        finally:
            store.close()

    def Screen(  # noqa: N802 (gRPC's method name)
        self, request: pb.ScreenRequest, context: grpc.ServicerContext
    ) -> pb.ScreenResponse:
        store = self.node.open_store()
        try:
            query = screening.ScreenQuery(
                protocol_version=request.protocol_version,
                session_id=request.session_id,
                list=request.list,
                epoch=request.epoch,
                list_version=request.list_version,
                purpose=request.purpose,
                blinded=request.blinded,
            )
            evaluated, proof = screening.answer_screen(
                self.node, store, _peer_agency(context), query
            )
            return pb.ScreenResponse(evaluated=evaluated, proof=proof)
        except Exception as exc:
            _abort(context, exc)
            raise  # unreachable: abort raises
        finally:
            store.close()


def _abort(context: grpc.ServicerContext, exc: Exception) -> None:
    """Ends a call with the status `node.status` chooses; unexpected errors are logged."""
    code = status_code(exc)
    if code is None:
        log.exception("call failed unexpectedly")
        context.abort(grpc.StatusCode.INTERNAL, "internal error; see the responder's log")
    context.abort(code, str(exc))


def _evaluated(tags: bytes) -> Iterator[pb.ResponderMessage]:
    step = DEFAULT_CHUNK_ELEMENTS * TAG_SIZE  # a count session's tags come all at once
    for start in range(0, len(tags), step):
        yield pb.ResponderMessage(evaluated=pb.Tags(packed=tags[start : start + step]))


def _labels(indices: list[int], labels: list[str]) -> Iterator[pb.ResponderMessage]:
    for start in range(0, len(indices), LABELS_PER_MESSAGE):
        end = start + LABELS_PER_MESSAGE
        yield pb.ResponderMessage(
            labels=pb.Labels(index=indices[start:end], label=labels[start:end])
        )


def _session_request(hello: pb.Hello) -> SessionRequest:
    mode = MODE_FROM_WIRE.get(hello.mode)
    if mode is None:
        raise InvalidInput(f"hello names no valid mode ({hello.mode}); use mutual or count")
    return SessionRequest(
        protocol_version=hello.protocol_version,
        session_id=hello.session_id,
        suite=hello.suite,
        mode=str(mode),
        list=hello.list,
        purpose=hello.purpose,
        set_size=hello.set_size,
        initiator_list=hello.initiator_list,
    )


def _peer_agency(context: grpc.ServicerContext) -> str:
    """The caller's agency, read from its verified client certificate."""
    certificates = context.auth_context().get("x509_pem_cert")
    if not certificates:
        raise UnknownPeer("no client certificate: connect with the node's federation certificate")
    return pki.agency_from_certificate(certificates[0])


def _quietly(fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # the original error matters more; keep serving
        log.exception("could not record the failed session")


def _server_credentials(node: NodeContext) -> grpc.ServerCredentials:
    config = node.config
    return grpc.ssl_server_credentials(
        [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
        root_certificates=config.ca_cert.read_bytes(),
        require_client_auth=True,
    )


def _serve_one(node_dir: str, reuse_port: bool, threads: int) -> None:
    pool = new_process_pool()
    runner = BatchRunner(pool)
    runner.hash("x25519-blake3", [b"warm-up"] * runner.workers * 2)  # workers exist before gRPC
    node = NodeContext.load(node_dir, runner)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="session"),
        options=[*SERVER_OPTIONS, ("grpc.so_reuseport", int(reuse_port))],
    )
    pb_grpc.add_MatchingServicer_to_server(MatchingServicer(node), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    listen = node.config.listen
    if server.add_secure_port(listen, _server_credentials(node)) == 0:
        raise OSError(f"cannot listen on {listen}: address in use or not local")
    server.start()
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    print(f"{node.config.agency} serving on {listen} (pid {os.getpid()})", flush=True)

    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    stopping.wait()
    health_servicer.enter_graceful_shutdown()  # load balancers and peers see NOT_SERVING
    server.stop(GRACE_SECONDS).wait()
    pool.shutdown()
    print(f"{node.config.agency} stopped (pid {os.getpid()})", flush=True)


def serve(node_dir: str, workers: int = 1, threads: int = 32) -> None:
    """Serves until SIGTERM/SIGINT, draining in-flight sessions; `workers` share the port."""
    NodeContext.load(node_dir, BatchRunner())  # fail fast, with a clear error, before forking
    if workers <= 1:
        _serve_one(node_dir, reuse_port=False, threads=threads)
        return
    children = []
    for _ in range(workers):
        pid = os.fork()  # before any gRPC object exists in this process
        if pid == 0:
            code = 0
            try:
                _serve_one(node_dir, reuse_port=True, threads=threads)
            except BaseException:
                log.exception("server worker failed")
                code = 1
            finally:
                sys.stdout.flush()
                os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        os.waitpid(child, 0)
