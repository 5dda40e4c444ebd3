"""What `blindmatch status` (and the local API's status) reports about a node.

Whether it is serving (from the serve lock: pid and since when) and answering
(a health check of its own address with its own certificate); each peer's
reachability, by a health check over mTLS with this node's certificate, and
the certificate it presents (revoked or not by the installed CRL); the node's
certificate expiry and the installed CRL; lists with their versions and
screening epochs; how many hits are new; the notification outbox per webhook URL
(pending, delivered, failing, and the oldest pending row's last error and next
attempt; never a secret). Anything an operator should act on is
also a line in ``warnings``, saying what to do: a peer down, a certificate
within `pki.EXPIRY_WARNING_DAYS` of expiry or revoked, a CRL past its next update,
a list that must be reloaded, notifications failing or waiting for a webhook no longer
configured.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import grpc
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.data import outbox
from node.data.store import Store
from node.errors import ConfigError, PeerError
from node.rpc.client import open_channel
from node.rpc.probe import peer_certificate
from node.setup import pki
from node.setup.config import NodeConfig, PeerPolicy
from node.setup.lock import Serving, serving

__all__ = ["node_status", "peer_reports"]
CHECK_SECONDS = 5.0
"""How long a peer's health check or TLS handshake may take before it counts as unreachable."""


async def node_status(
    config: NodeConfig, now: dt.datetime, timeout: float = CHECK_SECONDS
) -> dict[str, Any]:
    """The node's state as `status --json` prints it; peers are checked concurrently."""
    serve = serving(config.node_dir)
    try:
        pki.require_certificate(config)
    except ConfigError as exc:  # initialised with a request, certificate not installed yet
        return _without_certificate(config, serve, await asyncio.to_thread(_stored, config), exc)
    revocations = pki.RevocationList.load(config.crl)
    stored, answering, peers = await asyncio.gather(
        asyncio.to_thread(_stored, config),
        _health(config, config.agency, _own_address(config.listen), timeout) if serve else _none(),
        asyncio.gather(
            *(_peer(config, p, revocations, timeout, now) for _, p in sorted(config.peers.items()))
        ),
    )
    own = _certificate(x509.load_pem_x509_certificate(config.tls_cert.read_bytes()), now)
    report: dict[str, Any] = {
        "agency": config.agency,
        "listen": config.listen,
        "serving": _serving_json(serve, answering is None),
        "certificate": own,
        "crl": _crl_json(pki.installed_crl(config.node_dir)),
        "peers": list(peers),
        **stored,
    }
    report["warnings"] = _warnings(config, report, answering, now)
    return report


async def peer_reports(
    config: NodeConfig, now: dt.datetime, timeout: float = CHECK_SECONDS
) -> list[dict[str, Any]]:
    """Each peer's reachability and certificate as `status --json` reports them, by agency."""
    try:
        pki.require_certificate(config)
    except ConfigError as exc:
        peers: list[dict[str, Any]] = _without_certificate(config, None, {}, exc)["peers"]
        return peers
    revocations = pki.RevocationList.load(config.crl)
    return list(
        await asyncio.gather(
            *(_peer(config, p, revocations, timeout, now) for _, p in sorted(config.peers.items()))
        )
    )


def _crl_json(crl: pki.CrlInfo | None) -> dict[str, Any] | None:
    if crl is None:
        return None
    next_update = crl.next_update.isoformat(timespec="seconds") if crl.next_update else None
    return {"number": crl.number, "revoked": crl.revoked, "next_update": next_update}


def _serving_json(serve: Serving | None, answering: bool) -> dict[str, Any] | None:
    if serve is None:
        return None
    return {"pid": serve.pid, "since": serve.since, "answering": answering}


def _without_certificate(
    config: NodeConfig, serve: Serving | None, stored: dict[str, Any], problem: ConfigError
) -> dict[str, Any]:
    """The report of a node that cannot talk to anyone yet: no peer is checked."""
    peers = [
        {
            "agency": agency,
            "address": policy.address,
            "reachable": False,
            "error": "not checked: this node has no certificate",
            "certificate": None,
        }
        for agency, policy in sorted(config.peers.items())
    ]
    report = {
        "agency": config.agency,
        "listen": config.listen,
        "serving": _serving_json(serve, False),
        "certificate": None,
        "crl": None,
        "peers": peers,
        **stored,
    }
    return {**report, "warnings": [" ".join(str(problem).split())]}


async def _none() -> None:
    return None


def _own_address(listen: str) -> str:
    """Where this node can reach its own listener (a wildcard address is reached on loopback)."""
    host, _, port = listen.rpartition(":")
    return {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}.get(host, host) + ":" + port


async def _health(config: NodeConfig, agency: str, address: str, timeout: float) -> str | None:
    """None if `agency` at `address` answers SERVING to a health check, else why not."""
    try:
        async with open_channel(config, agency, address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
    except grpc.aio.AioRpcError as exc:
        details = " ".join((exc.details() or "").split())[:200]
        return f"{exc.code().name.lower()}: {details}" if details else exc.code().name.lower()
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return None if status == "SERVING" else f"health check says {status}"


async def _peer(
    config: NodeConfig,
    policy: PeerPolicy,
    revocations: pki.RevocationList,
    timeout: float,
    now: dt.datetime,
) -> dict[str, Any]:
    problem = await _health(config, policy.agency, policy.address, timeout)
    certificate = None
    try:
        presented = await peer_certificate(config, policy.agency, policy.address, timeout)
        revoked = revocations.lookup_blocking(presented.serial_number)  # a stat: cheap
        certificate = {**_certificate(presented, now), "revoked": revoked is not None}
    except PeerError as exc:
        problem = problem or str(exc)
    return {
        "agency": policy.agency,
        "address": policy.address,
        "reachable": problem is None,
        "error": problem,
        "certificate": certificate,
    }


def _certificate(cert: x509.Certificate, now: dt.datetime) -> dict[str, Any]:
    not_after = cert.not_valid_after_utc
    return {
        "serial": format(cert.serial_number, "x"),
        "not_after": not_after.isoformat(timespec="seconds"),
        "days_left": (not_after - now).days,
    }


def _stored(config: NodeConfig) -> dict[str, Any]:
    """Lists, their screening epochs and the new-hit count, from the store (blocking)."""
    with Store.open(config.store_path) as store:
        epochs = store.screening_epochs()
        lists = [
            {**info.to_json(), "stale": info.stale, "screening_epoch": epochs.get(info.name)}
            for info in store.lists()
        ]
        notifications = outbox.summary(store.conn, [w.url for w in config.webhooks])
        configured = {w.url for w in config.webhooks}
        for entry in notifications:
            entry["configured"] = entry["url"] in configured
        return {"lists": lists, "new_hits": store.new_hit_count(), "notifications": notifications}


def _warnings(
    config: NodeConfig, report: dict[str, Any], answering: str | None, now: dt.datetime
) -> list[str]:
    node_dir = config.node_dir
    warnings = []
    if report["serving"] is None:
        warnings.append(f"not serving: start it with 'blindmatch serve {node_dir}'")
    elif answering is not None:
        warnings.append(f"serving (pid {report['serving']['pid']}) but not answering: {answering}")
    days = report["certificate"]["days_left"]
    if days <= pki.EXPIRY_WARNING_DAYS:
        warnings.append(
            f"this node's certificate {'expired' if days < 0 else f'expires in {days} days'} "
            f"({report['certificate']['not_after']}): renew it with 'blindmatch init {node_dir} "
            f"--agency {config.agency} --listen {config.listen} --csr-out FILE', have the CA "
            "sign FILE, then 'blindmatch cert install'"
        )
    crl = report["crl"]
    if crl and crl["next_update"] and crl["next_update"] < now.isoformat(timespec="seconds"):
        warnings.append(
            f"the installed CRL (number {crl['number']}) was due to be replaced on "
            f"{crl['next_update']}: get the CA's latest ('blindmatch ca crl') and run "
            f"'blindmatch crl install {node_dir} CRL_FILE'"
        )
    for peer in report["peers"]:
        if not peer["reachable"]:
            warnings.append(
                f"peer {peer['agency']} at {peer['address']} is unreachable: {peer['error']}"
            )
        cert = peer["certificate"]
        if cert and cert["revoked"]:
            warnings.append(
                f"peer {peer['agency']} presents certificate {cert['serial']}, revoked by the "
                "installed CRL: no session with it will start until it installs a new one"
            )
        elif cert and cert["days_left"] <= pki.EXPIRY_WARNING_DAYS:
            warnings.append(
                f"peer {peer['agency']}'s certificate expires in {cert['days_left']} days "
                f"({cert['not_after']}): ask them to renew it"
            )
    for entry in report["notifications"]:
        oldest = entry["oldest_pending"]
        if not entry["configured"] and entry["pending"]:
            warnings.append(
                f"{entry['pending']:,} notification(s) wait for webhook {entry['url']}, which "
                "is no longer in node.toml: add its [[notify.webhook]] table back to send them"
            )
        elif entry["failing"] and oldest is not None:
            warnings.append(
                f"notifications to {entry['url']} are failing: {entry['failing']:,} of "
                f"{entry['pending']:,} pending; oldest (hit {oldest['hit_id']}, queued "
                f"{oldest['queued_at'][:19]}Z) after {oldest['attempts']} attempt(s): "
                f"{oldest['last_error'] or 'not tried yet'}; next attempt "
                f"{oldest['next_attempt_at'][:19]}Z. Check that the receiver is up and answers "
                "2xx; they are retried until delivered"
            )
    for info in report["lists"]:
        if info["stale"]:
            warnings.append(
                f"list {info['list']} was stored by an older blindmatch and cannot be matched: "
                f"load it again with 'blindmatch ingest {node_dir} --list {info['list']} "
                "--replace FILE'"
            )
    return warnings
