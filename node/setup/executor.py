"""Where a node's batches run: a local process pool, or a Dask cluster (docs/DASK.md).

`executor` in node.toml, or a command's `--executor`, is "local" (the default:
a process pool of this machine's cores, `crypto.batch.new_process_pool`) or a
Dask scheduler, `dask://HOST:PORT` (plain TCP) or `dask+tls://HOST:PORT`
(TLS with the files of `[executor_tls]`). `open_runner` makes the command's
`BatchRunner` from it; the command shuts the runner's executor down when it
ends, however it ends.

`DaskExecutor` is a Dask client's `concurrent.futures` executor
(`client.get_executor`) with the node's failure semantics:

- `submit` never blocks (the event loop calls it) and ships the work function
  by reference, with its packed bytes; tasks are submitted `pure=False` (no
  hashing of the bytes for a key) with `retries=RETRIES`. The work functions
  are pure, so running one again is harmless: the scheduler reruns the tasks
  of a worker that died (up to `distributed.scheduler.allowed-failures` times,
  then `KilledWorker`), and `retries` reruns a task that raised.
- Errors of the work itself (a bad point: `CryptoError`) come back as they are.
  What the cluster does wrong — the scheduler unreachable or gone, a batch
  whose workers kept dying, workers without blindmatch installed — comes back
  as `ExecutorUnavailable`, one line naming the scheduler and what to do; never
  as a cancelled future, which asyncio would read as Ctrl-C.
- After losing the scheduler, a background thread connects again every
  `RECONNECT_SECONDS`, so a serving node answers again once the scheduler is
  back; meanwhile batches fail at once.
- `BatchRunner.workers` asks `threads`: the cluster's worker threads as the
  client last heard them (refreshed by the client every 2 s), so a batch is
  split into one slice a thread.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, InvalidStateError
from concurrent.futures import wait as wait_for
from contextlib import contextmanager
from typing import Any, TypeVar

from crypto.batch import BatchRunner, new_process_pool
from node.errors import ConfigError, ExecutorUnavailable, Interrupted
from node.setup.config import NodeConfig, check_executor

__all__ = [
    "CONNECT_SECONDS",
    "DaskExecutor",
    "cluster_executor",
    "executor_choice",
    "open_runner",
    "probe",
]

log = logging.getLogger("blindmatch.executor")
T = TypeVar("T")

CONNECT_SECONDS = 10.0
"""How long connecting to a scheduler (and waiting for its first worker) may take."""
RECONNECT_SECONDS = 5.0
"""Pause between two attempts to reach a scheduler that went away."""
RETRIES = 2
"""Reruns of a task that raised on a worker (a lost worker's tasks are rerun regardless)."""
CLOSE_SECONDS = 5.0
"""How long closing the client may take when a command ends."""
_FIX = "start it (docs/DASK.md), or run with --executor local"


def executor_choice(config: NodeConfig, option: str | None) -> str:
    """The executor a command uses: its `--executor` if given, else node.toml's; checked."""
    if option is None:
        return config.executor
    scheduler = check_executor(option, "--executor")
    if scheduler and scheduler.startswith("tls://") and config.executor_tls is None:
        raise ConfigError(
            f"--executor {option} needs an [executor_tls] table with ca, cert and key in "
            f"{config.config_path} (the Dask cluster's CA, this node's certificate and key; "
            "docs/DASK.md)"
        )
    return option


def probe(config: NodeConfig, choice: str, seconds: float = CONNECT_SECONDS) -> None:
    """Checks that a Dask scheduler accepts TCP connections (no thread is started, so a
    process may still fork after it); ExecutorUnavailable if not, nothing for "local"."""
    address = check_executor(choice, "executor")
    if address is not None:
        _security(config, address)  # its files, before anything else
        _reach(address, choice, seconds)


def open_runner(
    config: NodeConfig,
    choice: str,
    *,
    strict: bool = True,
    reconnect: bool = False,
    start_method: str = "fork",
) -> tuple[Executor, BatchRunner]:
    """The command's executor for `choice` (see `executor_choice`) and a BatchRunner on it;
    the caller shuts the executor down.

    "local" forks a process pool now (`start_method`; call it before any gRPC object
    exists). A Dask scheduler is connected to now, with a timeout: if it cannot be, `strict`
    raises ExecutorUnavailable; otherwise the runner is returned and each batch sent to the
    cluster fails with that error (so a session records why it failed). With `reconnect`
    (a serving process), a scheduler lost later is connected to again in the background.
    """
    address = check_executor(choice, "executor")
    if address is None:
        pool = new_process_pool(start_method=start_method)
        return pool, BatchRunner(pool)
    executor = DaskExecutor(address, choice, _security(config, address), reconnect=reconnect)
    try:
        executor.connect()
    except ExecutorUnavailable:
        if strict:
            executor.shutdown(wait=False)
            raise
    return executor, BatchRunner(executor, workers=executor.threads)


@contextmanager
def cluster_executor(config: NodeConfig, option: str | None) -> Iterator[Executor | None]:
    """For a command that makes its own process pool when it needs one (ingest): None for
    "local", else a connected DaskExecutor (ExecutorUnavailable if it cannot be), whose
    batches still queued are cancelled and whose client is closed on exit."""
    choice = executor_choice(config, option)
    if check_executor(choice, "executor") is None:
        yield None
        return
    executor, _ = open_runner(config, choice)
    try:
        yield executor
    finally:
        executor.shutdown(cancel_futures=True)


def _security(config: NodeConfig, address: str) -> Any:
    """Dask's Security for a tls:// scheduler from [executor_tls] (files checked), else None."""
    if not address.startswith("tls://"):
        return None
    if config.executor_tls is None:
        raise ConfigError(
            f"the executor {address} needs an [executor_tls] table with ca, cert and key in "
            f"{config.config_path} (docs/DASK.md)"
        )
    ca, cert, key = config.executor_tls.paths(config.node_dir)
    for name, path in (("ca", ca), ("cert", cert), ("key", key)):
        try:
            path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{config.config_path}: [executor_tls] {name} = {str(path)!r} cannot be read "
                f"({exc.strerror}); fix the path or the file's permissions"
            ) from None
    from distributed.security import Security

    return Security(
        tls_ca_file=str(ca),
        tls_client_cert=str(cert),
        tls_client_key=str(key),
        require_encryption=True,
    )


def _reach(address: str, shown: str, seconds: float) -> None:
    """A TCP connection to the scheduler's port, at once: ExecutorUnavailable if refused."""
    host, _, port = address.partition("://")[2].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=seconds).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ExecutorUnavailable(
            f"cannot reach the Dask scheduler at {shown} ({reason}); {_FIX}"
        ) from None


def _quiet_dask() -> None:
    """Dask's log lines go through the node's logging (`serve`: warnings and worse), or
    nowhere in a command, whose one error line says what went wrong.

    Importing distributed gives its loggers stderr handlers of their own when the root
    logger has none; those are removed here.
    """
    serving = bool(logging.getLogger().handlers)
    for name in ("distributed", "distributed.client", "distributed.gc", "tornado"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
        if name != "tornado":
            logger.setLevel(logging.WARNING)
    for name in ("distributed", "tornado"):
        logger = logging.getLogger(name)
        if not serving and not logger.handlers:
            logger.addHandler(logging.NullHandler())
        logger.propagate = serving


class DaskExecutor(Executor):
    """Runs batches on a Dask cluster through its scheduler at `address` (`tcp://` or
    `tls://`); `shown` is the executor as the operator wrote it, for messages."""

    def __init__(
        self,
        address: str,
        shown: str,
        security: Any = None,
        *,
        connect_seconds: float = CONNECT_SECONDS,
        reconnect: bool = True,
        reconnect_seconds: float = RECONNECT_SECONDS,
    ) -> None:
        self.address = address
        self.shown = shown
        self.security = security
        self.connect_seconds = connect_seconds
        self.reconnect = reconnect
        self.reconnect_seconds = reconnect_seconds
        self._lock = threading.Lock()
        self._client: Any = None
        self._executor: Executor | None = None
        self._error: ExecutorUnavailable | None = None  # why batches fail now
        self._threads = 0
        self._pending: set[Future[Any]] = set()
        self._closed = threading.Event()
        self._reconnecting: threading.Thread | None = None

    # -- connecting -----------------------------------------------------------------------------

    def connect(self) -> None:
        """Connects to the scheduler now and waits for a worker, each within `connect_seconds`
        (blocking); raises ExecutorUnavailable naming the scheduler and what to do."""
        try:
            client = self._new_client()
        except ExecutorUnavailable as exc:
            with self._lock:
                self._error = exc
            raise
        with self._lock:
            if not self._closed.is_set():
                self._install(client)
                return
        client.close(timeout=CLOSE_SECONDS)
        raise Interrupted(f"the executor at {self.shown} was shut down while connecting")

    def _new_client(self) -> Any:
        _reach(self.address, self.shown, self.connect_seconds)
        from distributed import Client

        _quiet_dask()
        try:
            client = Client(
                self.address,
                security=self.security,
                timeout=self.connect_seconds,
                set_as_default=False,
                name="blindmatch",
            )
        except Exception as exc:  # OSError, TimeoutError, ssl.SSLError: one line for the operator
            raise ExecutorUnavailable(
                f"cannot connect to the Dask scheduler at {self.shown} ({_reason(exc)}); {_FIX}"
            ) from None
        try:
            client.wait_for_workers(1, timeout=self.connect_seconds)
        except Exception:
            client.close(timeout=CLOSE_SECONDS)
            raise ExecutorUnavailable(
                f"the Dask scheduler at {self.shown} has no worker after "
                f"{self.connect_seconds:.0f} s; start workers with 'dask worker "
                f"{self.address}' (docs/DASK.md), or run with --executor local"
            ) from None
        return client

    def _install(self, client: Any) -> None:
        """Uses `client` from now on (under the lock)."""
        self._client = client
        self._executor = client.get_executor(pure=False, retries=RETRIES)
        self._threads = self._count_threads(client) or 1
        self._error = None
        log.info("batches run on the Dask cluster at %s (%d threads)", self.shown, self._threads)

    def reconnect_later(self) -> None:
        """Tries to connect again in the background until it succeeds or the executor shuts
        down (with `reconnect`; a command that ends with its session need not)."""
        with self._lock:
            if (
                not self.reconnect
                or self._closed.is_set()
                or (self._reconnecting is not None and self._reconnecting.is_alive())
            ):
                return
            self._reconnecting = threading.Thread(
                target=self._reconnect, name="dask-reconnect", daemon=True
            )
            self._reconnecting.start()

    def _reconnect(self) -> None:
        while not self._closed.wait(self.reconnect_seconds):
            with self._lock:
                old = self._client
            if old is not None and old.status == "running":
                return  # Dask's client reconnected by itself
            if old is not None and old.status == "connecting":
                continue  # Dask's client is still trying, for connect_seconds
            try:
                client = self._new_client()
            except ExecutorUnavailable as exc:
                with self._lock:
                    self._error = exc
                continue
            except Exception as exc:  # anything else Dask raised: try again later
                log.warning("reconnecting to the Dask scheduler at %s: %s", self.shown, exc)
                continue
            with self._lock:
                if not self._closed.is_set():
                    self._client, old = None, self._client
                    self._install(client)
                    client = None
            for stale in (old, client):
                if stale is not None:
                    _close_quietly(stale)
            return

    # -- threads --------------------------------------------------------------------------------

    def threads(self) -> int:
        """The cluster's worker threads, as the client last heard (at least 1)."""
        with self._lock:
            client = self._client
        count = self._count_threads(client) if client is not None else 0
        if count:
            self._threads = count
        return self._threads or 1

    @staticmethod
    def _count_threads(client: Any) -> int:
        identity = getattr(client, "_scheduler_identity", None) or {}  # refreshed every 2 s
        total = identity.get("total_threads")
        if isinstance(total, int):
            return total
        workers = identity.get("workers") or {}
        return sum(int(w.get("nthreads", 0)) for w in workers.values())

    # -- Executor -------------------------------------------------------------------------------

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Sends `fn(*args)` to the cluster; the future fails with ExecutorUnavailable if the
        cluster cannot run it. Never blocks."""
        outer: Future[T] = Future()
        with self._lock:
            if self._closed.is_set():
                raise RuntimeError("cannot schedule new futures after shutdown")
            client, executor = self._client, self._executor
            usable = client is not None and executor is not None and client.status == "running"
            if usable:
                self._pending.add(outer)
            else:
                error = self._error or self._unavailable("lost the connection to the scheduler")
        if not usable or executor is None:
            self.reconnect_later()
            outer.set_exception(ExecutorUnavailable(str(error)))
            return outer
        try:
            inner = executor.submit(fn, *args, **kwargs)
        except Exception as exc:  # the client closed between the check and the submit
            self._forget(outer)
            outer.set_exception(self._unavailable(_reason(exc)))
            return outer
        # A cancelled `outer` leaves its task to finish on the cluster, as a process pool's
        # running task does: cancelling it is a blocking call to the scheduler. `shutdown`
        # closes the client, and the scheduler drops the tasks no client wants any more.
        inner.add_done_callback(lambda done: self._settle(outer, done))
        return outer

    def _settle(self, outer: Future[Any], inner: Future[Any]) -> None:
        """Passes the cluster's outcome of a task on to the node's future (client's thread)."""
        self._forget(outer)
        if outer.done():
            return  # cancelled by whoever waited for it
        try:
            if inner.cancelled():
                if self._closed.is_set():
                    outer.set_exception(Interrupted("the batch was stopped: the command is ending"))
                    return
                error = self._unavailable("lost the connection to the scheduler")
                with self._lock:
                    self._error = self._error or error
                self.reconnect_later()
                outer.set_exception(error)
                return
            exc = inner.exception()
            if exc is None:
                outer.set_result(inner.result())
            elif _from_cluster(exc):
                outer.set_exception(self._unavailable(_reason(exc)))
            else:
                outer.set_exception(exc)  # the work's own error, e.g. a bad point
        except InvalidStateError:  # cancelled meanwhile
            pass

    def _forget(self, outer: Future[Any]) -> None:
        with self._lock:
            self._pending.discard(outer)

    def _unavailable(self, reason: str) -> ExecutorUnavailable:
        return ExecutorUnavailable(
            f"the Dask cluster at {self.shown} could not run a batch ({reason}); check that "
            f"its scheduler and workers run (docs/DASK.md), or run with --executor local"
        )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Cancels (`cancel_futures`) or waits for (`wait`) the batches sent, then closes the
        client; the cluster itself runs on. Safe to call more than once."""
        with self._lock:
            self._closed.set()
            pending = list(self._pending)
            client, self._client, self._executor = self._client, None, None
            reconnecting = self._reconnecting
        if cancel_futures:
            for future in pending:
                future.cancel()
        elif wait:
            wait_for(pending)
        if client is not None:
            _close_quietly(client)
        if reconnecting is not None:  # a daemon: not waited for long, it may be connecting
            reconnecting.join(1.0)


def _close_quietly(client: Any) -> None:
    try:
        client.close(timeout=CLOSE_SECONDS)
    except Exception as exc:  # closing a client whose scheduler is gone may time out
        log.debug("closing the Dask client: %s", _reason(exc))


def _from_cluster(exc: BaseException) -> bool:
    """Whether a task's error is the cluster's (lost workers or comms, a worker that cannot
    import blindmatch) rather than the work's own."""
    from distributed import KilledWorker

    return isinstance(exc, KilledWorker | OSError | ImportError)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:200]
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
