"""The local API in `serve`: uvicorn on the serving process's event loop, beside gRPC.

`bind` opens the API's listening socket from node.toml's `api_listen` in the
`serve` command itself, before it forks its `--workers`: every serving process
inherits that one socket and accepts from it, so N processes share one port
(also a port chosen by the system, `api_listen = "127.0.0.1:0"`), and a
process busy with a request leaves the next connection to an idle one.
`api_job(socket)` is the job (`node.rpc.server.Job`) each serving process runs:
it builds the app, starts its real-time screening service, serves the socket
with uvicorn on the process's own event loop and prints ``AGENCY api on
http(s)://HOST:PORT (pid PID)`` once it accepts connections. When `serve`
stops (SIGTERM, SIGINT, the parent gone) the job is cancelled: uvicorn stops
accepting, gives requests in flight `grace_seconds` to finish, the screening
service is closed, and then the one writer of the process's session records and
audit entries (`GroupWriter`) once they are written. uvicorn never installs
signal handlers of its own: `serve` owns SIGTERM and SIGINT.

With `api_tls = true` the API is served over HTTPS with the node's own key and
certificate (issued by the federation CA: clients check it against `ca.crt`),
read when `serve` starts and again whenever `cert install` renews them
(`_follow_certificate`), so new connections get the new one without a restart,
as gRPC's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import uvicorn

from node.api import metrics
from node.api.app import create_app
from node.api.routes.screen import ScreeningService
from node.errors import ConfigError
from node.rpc.live_screening import LiveScreening
from node.sessions.blocking import GroupWriter
from node.setup.config import NodeConfig, check_api_listen
from node.setup.context import NodeContext

__all__ = ["api_job", "bind"]

log = logging.getLogger("blindmatch.api")
BACKLOG = 1024
STARTED_POLL = 0.01
CERTIFICATE_POLL_SECONDS = 2.0
"""How often the API checks whether `cert install` renewed the node's certificate."""


def bind(config: NodeConfig) -> socket.socket | None:
    """The API's listening socket on `api_listen`, or None when the API is off (ConfigError
    if it cannot listen there, or cannot use the node's certificate with `api_tls`)."""
    where = check_api_listen(config.api_listen, f"{config.config_path}: api_listen")
    if where is None:
        return None
    if config.api_tls:
        _tls_context(config)  # an unusable certificate stops serve now, not one API later
    host, port = where
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"the local API cannot listen on {config.api_listen} ({exc.strerror}): choose "
            "another with 'blindmatch config set NODE_DIR api_listen HOST:PORT' (port 0: any "
            "free port), or '' to turn the API off"
        ) from None
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    """uvicorn, leaving SIGTERM and SIGINT to `serve` (which cancels the job)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _tls_context(config: NodeConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"api_tls: the node's certificate cannot be used ({exc})") from None
    return context


def _pair_stamp(config: NodeConfig) -> tuple[float, ...]:
    """When the node's certificate and key last changed (0 for a file missing just now)."""
    return tuple(
        path.stat().st_mtime if path.exists() else 0.0 for path in (config.tls_cert, config.tls_key)
    )


async def _follow_certificate(context: ssl.SSLContext, config: NodeConfig) -> None:
    """Loads a renewed certificate and key into the API's TLS context once both are in place."""
    loaded = await asyncio.to_thread(_pair_stamp, config)
    reported: tuple[float, ...] | None = None
    while True:
        await asyncio.sleep(CERTIFICATE_POLL_SECONDS)
        stamp = await asyncio.to_thread(_pair_stamp, config)
        if stamp == loaded:
            continue
        try:  # checked on a scratch context first: a half-installed pair never reaches clients
            await asyncio.to_thread(_tls_context, config)
            await asyncio.to_thread(context.load_cert_chain, config.tls_cert, config.tls_key)
        except (ConfigError, OSError, ssl.SSLError) as exc:
            if stamp != reported:
                log.warning("the API keeps its certificate for now: %s", exc)
                reported = stamp
            continue
        loaded = stamp
        log.info("the API's certificate was reloaded from %s", config.tls_cert)


def api_job(sock: socket.socket) -> Callable[[NodeContext], Coroutine[Any, Any, None]]:
    """The job that serves the API on `sock` in a serving process."""

    async def serve_api(node: NodeContext) -> None:
        try:
            await _serve_api(node, sock)
        except asyncio.CancelledError:
            raise
        except Exception:  # the API is down; partners are still served
            log.exception("the local API stopped")

    return serve_api


async def _serve_api(node: NodeContext, sock: socket.socket) -> None:
    metrics.install_observer()
    writer = GroupWriter(node)  # the process's session records and audit entries, together
    try:
        live = LiveScreening(node, writer)
        await live.start()
        try:
            await _run_uvicorn(node, sock, live, writer)
        finally:
            await live.close()
    finally:
        await asyncio.to_thread(writer.close)


async def _run_uvicorn(
    node: NodeContext, sock: socket.socket, live: ScreeningService | None, writer: GroupWriter
) -> None:
    config = node.config
    server_config = uvicorn.Config(
        create_app(node, live, writer),
        lifespan="off",
        log_config=None,
        access_log=False,  # the audit log records each request, without its raw path
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=config.grace_seconds,
    )
    server_config.load()
    tls = config.api_tls
    following = None
    if tls:
        server_config.ssl = _tls_context(config)
        following = asyncio.create_task(_follow_certificate(server_config.ssl, config))
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    server = _Server(server_config)
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
    try:
        while not server.started and not serving.done():
            await asyncio.sleep(STARTED_POLL)
        if serving.done():
            serving.result()  # raises why it stopped
            return
        host, port = sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if tls else "http"
        print(f"{config.agency} api on {scheme}://{host}:{port} (pid {os.getpid()})", flush=True)
        await asyncio.shield(serving)
    except asyncio.CancelledError:  # serve is stopping: drain, then stop
        server.should_exit = True
        await asyncio.wait([serving])
        raise
    finally:
        if following is not None:
            following.cancel()
