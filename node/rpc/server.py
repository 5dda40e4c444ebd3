"""`blindmatch serve`: the peer-facing gRPC server on one asyncio event loop (grpc.aio).

Streams cost no thread: thousands of stalled ones hold memory only, and the
health service answers whatever they do. The servicer is a thin translator:
it identifies the caller from its certificate, decodes each message once
(`node.rpc.wire`; requests arrive as bytes, so even one that is not protobuf is
a refusal like any other), hands the call to its orchestration in
`node.sessions`, and maps what goes wrong to a status (`node.rpc.status`).
Every call's handler runs from the call's start (the unary-request methods are
served as streams), so every refusal is audited, even of a request gRPC itself
refused. Every read and write of a stream is bounded by `idle_seconds`; a
stream that ends under its handler is a typed error, never one of grpc's
classes. CPU batches run on the process pool, forked before any gRPC object
exists (`crypto.batch.new_process_pool`), or on a Dask cluster (`executor` in
node.toml or `--executor`: each serving process connects its own client, after
the fork; `node.setup.executor`), and SQLite in the loop's thread pool. A Dask
scheduler that cannot be reached when `serve` starts stops it at once, with an
error; one that goes away later fails the sessions that need it (recorded,
audited, the peer told UNAVAILABLE) until it is back.

On SIGTERM or SIGINT the health service says NOT_SERVING, calls in flight get
`grace_seconds` to finish and are then cancelled (and recorded as failed), and
the process exits. With `--workers N`, N such processes are forked before gRPC
starts and share the port through SO_REUSEPORT; each has its own limits, and
stops at once (no drain) if the parent dies, even by SIGKILL. A
lock in the node directory stops a second `serve` of the same node.

Certificates change without a restart: the TLS credentials are dynamic
(`_NodeCredentials`: gRPC asks before every handshake, and the node's key,
certificate and CA are read again when their files changed, as `cert install`
replaces them), and every call's caller is looked up in the installed CRL
(`pki.RevocationList`, read again when `crl install` replaced it): a revoked
caller is refused UNAUTHENTICATED ("certificate revoked") and the refusal
audited like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime as dt
import logging
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from crypto.batch import BatchRunner
from node.errors import (
    CertificateRevoked,
    ConfigError,
    InvalidInput,
    NodeError,
    PeerError,
    Stalled,
    UnknownPeer,
)
from node.generated.blindmatch.v1 import matching_pb2 as pb
from node.generated.blindmatch.v1 import matching_pb2_grpc as pb_grpc
from node.rpc.status import peer_status
from node.rpc.wire import decode_fetch, decode_initiator, decode_screen, encode_responder
from node.sessions import observe
from node.sessions.answering import Answering
from node.sessions.messages import Message
from node.sessions.mutual_responder import answer_session
from node.sessions.screen_responder import answer_fetch, answer_screen
from node.setup import pki
from node.setup.config import NodeConfig
from node.setup.context import NodeContext
from node.setup.executor import executor_choice, open_runner, probe
from node.setup.lock import serve_lock

__all__ = ["serve"]

log = logging.getLogger("blindmatch.server")
T = TypeVar("T")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Matching"].full_name
BLOCKING_THREADS = 32  # SQLite and waits on the process pool; streams need none
# A forked server gets this when its parent dies (even by SIGKILL): it stops at once, its calls
# cancelled and recorded failed, rather than draining for grace_seconds.
PARENT_GONE = signal.SIGHUP
Job = Callable[[NodeContext], Coroutine[Any, Any, None]]
"""Work a serving process runs beside the server until it stops (`node.jobs`)."""
MAX_MESSAGE = 4 * 1024 * 1024  # bytes; gRPC refuses a larger message (RESOURCE_EXHAUSTED)
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]


async def _within(idle: float, step: Awaitable[T], verb: str, what: str) -> T:
    """One read or write of a stream, bounded: Stalled when the peer has `verb` nothing for
    `idle` seconds; PeerError when the call is gone under it (cancelled by the peer, or its
    connection lost), so that the reason recorded is that and not one of grpc's classes."""
    try:
        return await asyncio.wait_for(step, idle)
    except TimeoutError:
        text = f"the peer {verb} nothing for {idle:.0f} s; the {what} was aborted"
        raise Stalled(text, peer=text) from None
    except grpc.aio.BaseError as exc:
        log.debug("a stream ended under its handler: %r", exc)
        text = f"the call ended before the {what} did: cancelled by the peer or connection lost"
        raise PeerError(text, peer=text) from None


class _Stream:
    """A Session call's stream as `node.sessions` sees it, every wait bounded."""

    def __init__(self, context: grpc.aio.ServicerContext, idle_seconds: float) -> None:
        self.context = context
        self.idle = idle_seconds

    async def receive(self) -> Message | None:
        message = await _within(self.idle, self.context.read(), "sent", "session")
        if message is grpc.aio.EOF:
            return None
        return decode_initiator(message)

    async def send(self, message: Message) -> None:
        await _within(self.idle, self.context.write(encode_responder(message)), "read", "session")

    async def done_sending(self) -> None:
        """The responder's side ends when its handler returns."""

    def allow_quiet(self, seconds: float) -> None:
        """The initiator is never busy for the responder for long: the idle timeout holds."""


class MatchingServicer(pb_grpc.MatchingServicer):
    """Peers' calls in, `node.sessions` orchestrations, statuses out."""

    def __init__(self, answering: Answering, revocations: pki.RevocationList) -> None:
        self.answering = answering
        self.revocations = revocations

    async def Session(  # noqa: N802 (gRPC's method name)
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> None:
        try:
            peer = await self._caller(context, "session.refused")
            await answer_session(
                self.answering, peer, _Stream(context, self.answering.idle_seconds)
            )
        except Exception as exc:
            await _abort(context, exc)

    async def FetchEncodedList(  # noqa: N802 (gRPC's method name)
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> None:  # chunks are written with `context.write`, each bounded by the idle timeout
        try:
            peer = await self._caller(context, "screen.refused")
            fetch = await self._request(context, peer, "screen.refused", decode_fetch)
            idle = self.answering.idle_seconds
            async for header, tags, sealed in answer_fetch(self.answering, peer, fetch):
                chunk = pb.EncodedListChunk(
                    epoch=header.epoch,
                    public_key=header.public_key,
                    list_version=header.list_version,
                    total=header.total,
                    list_kind=header.list_kind,
                    tags=tags,
                    sealed_labels=sealed,
                )
                # A peer that stops reading must not hold the call for ever.
                await _within(idle, context.write(chunk), "read", "fetch")
        except Exception as exc:
            await _abort(context, exc)

    async def Screen(  # noqa: N802 (gRPC's method name)
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> pb.ScreenResponse:
        try:
            peer = await self._caller(context, "screen.refused")
            query = await self._request(context, peer, "screen.refused", decode_screen)
            evaluated, proof = await answer_screen(self.answering, peer, query)
            return pb.ScreenResponse(evaluated=evaluated, proof=proof)
        except Exception as exc:
            await _abort(context, exc)
            raise  # unreachable: abort raises

    async def _caller(self, context: grpc.aio.ServicerContext, event: str) -> str:
        """The caller's agency, read from its verified client certificate, unless the installed
        CRL revokes that certificate; else an audited refusal."""
        certificates = context.auth_context().get("x509_pem_cert")
        try:
            if not certificates:
                raise ConfigError("no client certificate")
            caller = pki.certificate_info(certificates[0])
        except ConfigError as exc:
            refusal = UnknownPeer(
                f"a caller's certificate names no agency ({exc})",
                peer="your certificate names no agency; use the node's federation certificate",
            )
            await self.answering.refused(event, {"peer": "unidentified"}, refusal)
            raise refusal from None
        revocation = await asyncio.to_thread(self.revocations.lookup_blocking, caller.serial)
        if revocation is not None:
            serial = pki.serial_text(caller.serial)
            refusal = CertificateRevoked(
                f"peer {caller.agency}'s certificate (serial {serial}) is revoked by the "
                f"federation CRL number {revocation.crl_number} installed "
                f"{revocation.installed_at:%Y-%m-%d %H:%M} UTC; the call was refused",
                peer=(
                    f"certificate revoked: the certificate your node presented (serial {serial}) "
                    "is on the federation's revocation list; ask the federation CA operator for "
                    "a new one"
                ),
            )
            log.warning("%s", refusal)
            await self.answering.refused(event, {"peer": caller.agency}, refusal)
            raise refusal
        return caller.agency

    async def _request(
        self,
        context: grpc.aio.ServicerContext,
        peer: str,
        event: str,
        decode: Callable[[bytes], T],
    ) -> T:
        """The call's one request, read (within the idle timeout), decoded and checked; a
        missing or malformed one is an audited refusal."""
        try:
            data = await _within(self.answering.idle_seconds, context.read(), "sent", "call")
            if data is grpc.aio.EOF:
                text = (
                    "the call ended before its request arrived: none was sent, or it was over "
                    f"the {MAX_MESSAGE // 2**20} MiB message limit"
                )
                raise InvalidInput(text, peer=text)
            return decode(data)
        except NodeError as exc:
            await self.answering.refused(event, {"peer": peer}, exc)
            raise


def _add_matching_service(servicer: MatchingServicer, server: grpc.aio.Server) -> None:
    """Registers the Matching service so that every refusal reaches a handler, and its audit.

    Requests are left as bytes: `node.rpc.wire` decodes them inside the
    handler, so a message that is not valid protobuf is refused and audited
    like any other malformed input (with the generated deserializers grpc
    itself answers INTERNAL or UNKNOWN, naming a Python class, and nothing is
    audited). The unary-request methods are served as streams (the wire does
    not tell them apart): their handler starts with the call and reads the
    request itself, so it also sees a request that gRPC refused (one over the
    message limit), which a unary handler would never be called for.
    """
    handlers = {
        "Session": grpc.stream_stream_rpc_method_handler(
            servicer.Session, response_serializer=pb.ResponderMessage.SerializeToString
        ),
        "FetchEncodedList": grpc.stream_stream_rpc_method_handler(
            servicer.FetchEncodedList, response_serializer=pb.EncodedListChunk.SerializeToString
        ),
        "Screen": grpc.stream_unary_rpc_method_handler(
            servicer.Screen, response_serializer=pb.ScreenResponse.SerializeToString
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


async def _abort(context: grpc.aio.ServicerContext, exc: Exception) -> None:
    """Ends a call with what `peer_status` says the peer may be told; bugs are logged."""
    status = peer_status(exc)
    observe.call_failed(status.code.name)
    if status.code is grpc.StatusCode.INTERNAL:
        log.error("call failed unexpectedly", exc_info=exc)
    await context.abort(status.code, status.details, trailing_metadata=status.metadata)


async def _serve(node: NodeContext, reuse_port: bool, jobs: Sequence[Job]) -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="blocking"))
    answering = Answering.of(node)
    revocations = pki.RevocationList.load(node.config.crl)
    server = grpc.aio.server(options=[*SERVER_OPTIONS, ("grpc.so_reuseport", int(reuse_port))])
    _add_matching_service(MatchingServicer(answering, revocations), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    listen = node.config.listen
    credentials = _NodeCredentials(node.config).server_credentials()
    if server.add_secure_port(listen, credentials) == 0:
        raise ConfigError(f"cannot listen on {listen}: address in use or not local")
    stopping = asyncio.Event()
    grace = float(node.config.grace_seconds)

    def orphaned() -> None:  # a forked server's parent died: stop now, no drain
        nonlocal grace
        grace = 0.0
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    if reuse_port:  # one of `--workers N` forked servers
        loop.add_signal_handler(PARENT_GONE, orphaned)
    await server.start()
    for service in ("", SERVICE_NAME):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    running = [asyncio.create_task(job(node), name=job.__name__) for job in jobs]
    print(f"{node.config.agency} serving on {listen} (pid {os.getpid()})", flush=True)
    await stopping.wait()
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    await health_servicer.enter_graceful_shutdown()  # load balancers and peers see NOT_SERVING
    await server.stop(grace)
    with contextlib.suppress(BrokenPipeError):  # whoever read our output may be gone
        print(f"{node.config.agency} stopped (pid {os.getpid()})", flush=True)


class _NodeCredentials:
    """The node's TLS key, certificate and CA for each new connection, re-read when they change.

    gRPC's core calls `fetch` before every handshake, from its own thread. It
    stats the three files and returns a new configuration only when one of them
    changed *and* the key matches the certificate — `cert install` replaces
    them one by one, so a half-done install is skipped until it is complete —
    else None, which keeps the current configuration for the connection.
    """

    def __init__(self, config: NodeConfig) -> None:
        self.paths = (config.tls_key, config.tls_cert, config.ca_cert)
        self.stamp: tuple[tuple[int, int, int] | None, ...] = ()
        self.refused: tuple[tuple[int, int, int] | None, ...] = ()
        self.lock = threading.Lock()

    def server_credentials(self) -> grpc.ServerCredentials:
        """Dynamic server credentials, starting from the files as they are (ConfigError if bad)."""
        try:
            initial, info = self._configuration()
        except OSError as exc:
            raise ConfigError(f"cannot read the node's TLS files ({exc})") from None
        _warn_if_expiring(info)
        return grpc.dynamic_ssl_server_credentials(
            initial, self.fetch, require_client_authentication=True
        )

    def _stamps(self) -> tuple[tuple[int, int, int] | None, ...]:
        return tuple(_file_stamp(path) for path in self.paths)

    def _configuration(self) -> tuple[grpc.ServerCertificateConfiguration, pki.CertificateInfo]:
        stamp = self._stamps()  # before reading: a change while reading is seen next time
        key, cert, ca = (path.read_bytes() for path in self.paths)
        info = pki.check_key_pair(key, cert)
        self.stamp = stamp
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca), info

    def fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """A new configuration if the files changed and are usable, else None (keep the current)."""
        with self.lock:
            stamp = self._stamps()
            if stamp == self.stamp or stamp == self.refused:
                return None
            try:
                configuration, info = self._configuration()
            except (ConfigError, OSError) as exc:  # mid-install, or broken: keep what serves
                self.refused = stamp
                log.warning(
                    "TLS files changed but cannot be used yet; keeping the current: %s", exc
                )
                return None
            except Exception:  # never raise into gRPC's core
                log.exception("reading the TLS files failed; keeping the current certificate")
                return None
        log.info(
            "TLS certificate reloaded: serial %s, valid until %s",
            pki.serial_text(info.serial),
            f"{info.not_after:%Y-%m-%d}",
        )
        _warn_if_expiring(info)
        return configuration


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def _warn_if_expiring(info: pki.CertificateInfo) -> None:
    days = (info.not_after - dt.datetime.now(dt.UTC)).days
    if days <= pki.EXPIRY_WARNING_DAYS:
        log.warning(
            "this node's certificate (serial %s) %s: renew it with 'blindmatch init NODE_DIR "
            "--agency %s --listen HOST:PORT --csr-out FILE', then 'blindmatch cert install'",
            pki.serial_text(info.serial),
            "has expired" if days < 0 else f"expires in {days} days",
            info.agency,
        )


def _serve_process(node_dir: Path, reuse_port: bool, jobs: Sequence[Job], executor: str) -> None:
    # A pool is forked now, before any gRPC object exists in this process; a Dask client
    # (threads, no fork) is this process's own.
    config = NodeConfig.load(node_dir)
    pool, runner = open_runner(config, executor, reconnect=True)
    try:
        node = NodeContext.load(node_dir, runner)
        asyncio.run(_serve(node, reuse_port, jobs))
    finally:
        pool.shutdown(cancel_futures=True)


def serve(
    node_dir: str | os.PathLike[str],
    workers: int = 1,
    jobs: Sequence[Job] = (),
    executor: str | None = None,
) -> None:
    """Serves until SIGTERM/SIGINT, draining calls in flight; `workers` processes share the port.

    Each serving process also runs `jobs` (`node.jobs`: what a node does on its
    own) on its event loop, and cancels them when it stops. `executor` overrides
    node.toml's (`--executor`).
    """
    node_dir = Path(node_dir)
    # Fail fast, with a clear error, before forking: no node, no certificate, an unusable CRL,
    # a Dask scheduler that does not answer (probed without starting a thread).
    node = NodeContext.load(node_dir, BatchRunner())
    pki.require_certificate(node.config)
    pki.RevocationList.load(node.config.crl)
    choice = executor_choice(node.config, executor)
    probe(node.config, choice)
    with serve_lock(node_dir):
        if workers <= 1:
            _serve_process(node_dir, reuse_port=False, jobs=jobs, executor=choice)
            return
        children = [_fork_worker(node_dir, jobs, choice) for _ in range(workers)]

        def forward(signum: int, _frame: object) -> None:
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child, signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        for child in children:
            os.waitpid(child, 0)


def _fork_worker(node_dir: Path, jobs: Sequence[Job], executor: str) -> int:
    """Forks one serving process (before any gRPC object exists); it dies with this one."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, PARENT_GONE)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(0)
        _serve_process(node_dir, reuse_port=True, jobs=jobs, executor=executor)
    except NodeError as exc:  # e.g. the Dask scheduler went away while it started: one line
        log.error("server worker failed: %s", " ".join(str(exc).split()))
        code = 1
    except BaseException:
        log.exception("server worker failed")
        code = 1
    finally:
        sys.stdout.flush()
        os._exit(code)
