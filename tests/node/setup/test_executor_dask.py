"""Batches on a real Dask cluster (`distributed.LocalCluster`, two worker processes): the
same bytes as the process pool, a worker killed mid-batch changes nothing, a scheduler that
is unreachable or goes away is one clear `ExecutorUnavailable`, and TLS with the node's
`[executor_tls]` files.

One cluster serves the module; the tests that stop a scheduler start their own (worker
threads, to start quickly).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from crypto.batch import BatchRunner, new_process_pool
from crypto.errors import InvalidElement
from crypto.groups import get_suite
from node.errors import ExecutorUnavailable
from node.setup.config import ExecutorTLS, NodeConfig
from node.setup.executor import DaskExecutor, open_runner
from tests.conftest import wait_until
from tests.federation import free_port
from tests.node.dask_cluster import BusyWorkerKiller, running_cluster

SUITES = ("x25519-blake3", "ristretto255-sha512")
ELEMENTS = [b"blindmatch/v1\x00phone\x00+3161234%04d" % i for i in range(1001)]
KILL_BATCH = 20_000  # elements: each worker's slice runs long enough to be killed mid-way


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_cluster(tmp_path_factory.mktemp("dask")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def dask(cluster: Any) -> Iterator[DaskExecutor]:
    address = cluster.scheduler_address
    executor = DaskExecutor(address, "dask://" + address.partition("://")[2])
    executor.connect()
    yield executor
    executor.shutdown()


@pytest.fixture(scope="module")
def pool() -> Iterator[Executor]:
    # forkserver: this process runs the cluster's threads, and forking them is unsafe (NOTES)
    pool = new_process_pool(2, start_method="forkserver")
    yield pool
    pool.shutdown()


def _outputs(runner: BatchRunner, scalars: dict[str, bytes]) -> dict[str, tuple[bytes, bytes]]:
    out = {}
    for suite in SUITES:
        points = runner.hash(suite, ELEMENTS)
        out[suite] = (points, runner.multiply(suite, scalars[suite], points))
    return out


def test_batches_are_the_process_pools_bit_for_bit(
    cluster: Any, dask: DaskExecutor, pool: Executor
) -> None:
    from distributed import Client

    scalars = {suite: get_suite(suite).random_scalar() for suite in SUITES}
    expected = _outputs(BatchRunner(pool, min_parallel=1), scalars)
    assert expected == _outputs(BatchRunner(), scalars)  # the pool's are the in-process ones
    assert dask.threads() == 2
    runner = BatchRunner(dask, workers=dask.threads, min_parallel=1)
    assert runner.workers == 2
    assert _outputs(runner, scalars) == expected
    # Dask's own executor, as BatchRunner takes any concurrent.futures executor
    with Client(cluster.scheduler_address, timeout=10, set_as_default=False) as client:
        plain = BatchRunner(client.get_executor(pure=False, retries=2), workers=2, min_parallel=1)
        assert _outputs(plain, scalars) == expected


def test_a_bad_point_is_the_works_own_error(dask: DaskExecutor) -> None:
    suite = get_suite("ristretto255-sha512")
    runner = BatchRunner(dask, workers=dask.threads, min_parallel=1)
    with pytest.raises(InvalidElement, match="not a valid ristretto255 point"):
        runner.multiply(suite.name, suite.random_scalar(), b"\xff" * 32 * 300)


def test_a_worker_killed_mid_batch_changes_nothing(cluster: Any, dask: DaskExecutor) -> None:
    suite = get_suite("x25519-blake3")
    local = BatchRunner()
    points = local.hash(suite.name, [b"e%d" % i for i in range(KILL_BATCH)])
    scalar = suite.random_scalar()
    runner = BatchRunner(dask, workers=dask.threads)
    with BusyWorkerKiller(cluster.scheduler_address, "_multiply") as killer:
        result = runner.multiply(suite.name, scalar, points)
        killer.thread.join(30)
        assert killer.killed is not None, "no worker was seen running a slice"
    assert result == local.multiply(suite.name, scalar, points)


def test_an_unreachable_scheduler_fails_at_once_and_says_what_to_do(tmp_path: Path) -> None:
    port = free_port()
    shown = f"dask://127.0.0.1:{port}"
    config = NodeConfig(node_dir=tmp_path, agency="customs-nl", listen="127.0.0.1:1")
    started = time.monotonic()
    with pytest.raises(ExecutorUnavailable) as caught:
        open_runner(config, shown)
    assert time.monotonic() - started < 2.0
    assert str(caught.value) == (
        f"cannot reach the Dask scheduler at {shown} (Connection refused); start it "
        "(docs/DASK.md), or run with --executor local"
    )
    # Not strict (match, sweep): each batch sent to the cluster fails with that error, so a
    # session records why; a batch too small to ship runs in-process as always.
    executor, runner = open_runner(config, shown, strict=False)
    try:
        with pytest.raises(ExecutorUnavailable, match=f"at {shown} .*Connection refused"):
            runner.hash("x25519-blake3", ELEMENTS)
        assert runner.hash("x25519-blake3", ELEMENTS[:10]) == BatchRunner().hash(
            "x25519-blake3", ELEMENTS[:10]
        )
    finally:
        executor.shutdown()


def test_a_scheduler_that_goes_away_fails_the_batch_then_is_reconnected(
    tmp_path: Path,
) -> None:
    port = free_port()
    shown = f"dask://127.0.0.1:{port}"
    options = {"n_workers": 1, "processes": False, "scheduler_port": port}
    executor = DaskExecutor(f"tcp://127.0.0.1:{port}", shown, connect_seconds=2.0)
    executor.reconnect_seconds = 0.2
    try:
        with running_cluster(tmp_path / "first", **options) as cluster:
            executor.connect()
            batch = [executor.submit(time.sleep, 1) for _ in range(5)]
            assert wait_until(lambda: _processing(cluster), 30), "no task started"
        # the scheduler is gone: what had not finished fails, clearly and never as cancelled
        outcomes = [future.exception(timeout=10) for future in batch]
        lost = [error for error in outcomes if error is not None]
        assert lost and all(isinstance(error, ExecutorUnavailable) for error in lost), outcomes
        assert str(lost[0]) == (
            f"the Dask cluster at {shown} could not run a batch (lost the connection to the "
            "scheduler); check that its scheduler and workers run (docs/DASK.md), or run with "
            "--executor local"
        )
        later = executor.submit(pow, 2, 10)  # fails at once while the scheduler is away
        assert isinstance(later.exception(timeout=1), ExecutorUnavailable)
        with running_cluster(tmp_path / "second", **options):  # back on the same port

            def answers() -> bool:
                return executor.submit(pow, 2, 10).exception(timeout=10) is None

            assert wait_until(answers, 30, interval=0.2), "never reconnected"
            assert executor.submit(pow, 2, 10).result(timeout=10) == 1024
    finally:
        executor.shutdown(cancel_futures=True)


def _processing(cluster: Any) -> bool:
    return any(ts.state == "processing" for ts in list(cluster.scheduler.tasks.values()))


# -- TLS ------------------------------------------------------------------------------------------


def _write_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and one certificate for scheduler, workers and node (127.0.0.1): ca, cert, key."""
    directory.mkdir(parents=True)
    now = dt.datetime.now(dt.UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test dask CA"))
        .issuer_name(name("test dask CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("dask"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.crt", directory / "dask.crt", directory / "dask.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def test_tls_with_the_nodes_executor_tls_files(tmp_path: Path) -> None:
    from distributed.security import Security

    ca, cert, key = _write_pki(tmp_path / "tls" / "dask")
    security = Security(
        tls_ca_file=str(ca),
        tls_scheduler_cert=str(cert),
        tls_scheduler_key=str(key),
        tls_worker_cert=str(cert),
        tls_worker_key=str(key),
        tls_client_cert=str(cert),
        tls_client_key=str(key),
        require_encryption=True,
    )
    options = {"n_workers": 1, "processes": False, "protocol": "tls://", "security": security}
    with running_cluster(tmp_path / "scratch", **options) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        shown = "dask+tls://" + address.partition("://")[2]
        config = NodeConfig(
            node_dir=tmp_path,
            agency="customs-nl",
            listen="127.0.0.1:1",
            executor=shown,
            executor_tls=ExecutorTLS("tls/dask/ca.crt", "tls/dask/dask.crt", "tls/dask/dask.key"),
        )
        executor, runner = open_runner(config, config.executor)
        try:
            assert isinstance(executor, DaskExecutor) and executor.address == address
            runner.min_parallel = 1
            scalars = {suite: get_suite(suite).random_scalar() for suite in SUITES}
            assert _outputs(runner, scalars) == _outputs(BatchRunner(), scalars)
        finally:
            executor.shutdown()
