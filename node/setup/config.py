"""The node's configuration: `NODE_DIR/node.toml`, its peers and their policies.

A node directory holds::

    node.toml        this file: agency id, listen address, canonicalisation, peers
    store.sqlite     lists, records, cached points, sessions, hits, audit (node.store)
    audit.key/.pub   Ed25519 key that signs the audit log (node.pki)
    tls/             node.key, node.crt (issued by the federation CA), ca.crt, crl.pem (the
                     CA's revocation list) and pending.key (a request not installed yet)

`node.toml`::

    agency = "customs-nl"            # the agency id, also the CN of its TLS certificate
    listen = "127.0.0.1:50051"
    region = "NL"                    # default phone region
    date_order = ""                  # "", "DMY" or "MDY"
    suite = "x25519-blake3"          # suite of the mutual/count sessions this node initiates
    screen_epoch_hours = 168         # screening key epochs rotate this often (lazily, on use)
    idle_seconds = 30                # a stream with no message for this long is aborted
    max_sessions = 256               # calls served at once, all peers together
    grace_seconds = 30               # on SIGTERM, calls in flight get this long to finish
    retain_days = 0                  # records not stored for this long expire (0: keep)
    sweep_minutes = 60               # serve sweeps every operations list this often (0: off)
    sweep_poll_seconds = 10          # serve looks this often whether an operations list changed
    notify_retry_seconds = 2         # first retry of a failed webhook delivery; doubles to 600
    api_listen = "127.0.0.1:0"       # the local HTTP API (docs/API.md); port 0: any free one;
                                     # "" turns it off
    api_tls = false                  # serve the API over HTTPS with the node's certificate
    executor = "local"               # where batches run: "local" (a process pool) or a Dask
                                     # scheduler, "dask://HOST:PORT" or "dask+tls://HOST:PORT"
    [executor_tls]                   # for dask+tls:// (docs/DASK.md); relative to NODE_DIR
    ca = "tls/dask/ca.crt"
    cert = "tls/dask/node.crt"
    key = "tls/dask/node.key"
    [[notify.webhook]]               # new hits are POSTed here (docs/NOTIFICATIONS.md)
    url = "https://cases.customs.example/blindmatch"
    secret = "..."                   # signs each delivery (HMAC-SHA256); never shown
    [[screen.target]]                # the local API's POST /v1/screen asks these by default
    peer = "police-nl"               # a configured peer (below) whose modes include "screen"
    list = "watchlist"               # the peer's list (docs/SCREENING-LIVE.md)
    [peers.police-nl]
    address = "127.0.0.1:50052"
    lists = []                       # empty = all lists
    modes = ["mutual", "count"]
    release_labels = false
    max_set_size = 1000000
    sessions_per_hour = 60           # each direction counted on its own
    max_concurrent = 4               # calls from this peer served at once
    screen_budget_per_day = 100000

Writes go to a temporary file that replaces `node.toml` atomically, so a crash
never leaves half a configuration.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import tomli_w

from crypto.groups import SUITES
from node.data.erasure import MAX_RETAIN_DAYS
from node.data.identifiers import CanonContext, DateOrder
from node.data.store import check_list_name
from node.errors import ConfigError, InvalidInput

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_MODES",
    "EXECUTOR_FORMS",
    "ExecutorTLS",
    "MODES",
    "NodeConfig",
    "PeerPolicy",
    "SETTABLE",
    "ScreenTarget",
    "Webhook",
    "check_address",
    "check_api_listen",
    "check_agency",
    "check_executor",
    "with_option",
    "with_peer",
    "without_peer",
    "write_config",
]

CONFIG_FILE = "node.toml"
MODES = frozenset({"mutual", "count", "screen"})
DEFAULT_MODES = frozenset({"mutual", "count"})
DEFAULT_SUITE = "x25519-blake3"
DEFAULT_SCREEN_EPOCH_HOURS = 168
# Serving limits (DESIGN §5), each a whole number within its range.
SERVING_LIMITS = {
    "idle_seconds": (30, 1, 3600),
    "max_sessions": (256, 1, 100_000),
    "grace_seconds": (30, 0, 3600),
}
# Deconfliction sweeps run by `serve` (node.jobs.sweeps), each a whole number within its range.
SWEEP_SETTINGS = {
    "sweep_minutes": (60, 0, 10_080),
    "sweep_poll_seconds": (10, 1, 3600),
}
DEFAULT_API_LISTEN = "127.0.0.1:0"
"""The local API on loopback, on a port free when `serve` starts (its log names it)."""
NOTIFY_RETRY_SECONDS = (2, 1, 600)
"""Default, lowest and highest `notify_retry_seconds`: the first retry of a failed delivery."""
EXECUTOR_FORMS = "local, dask://HOST:PORT or dask+tls://HOST:PORT"
"""What `executor` (node.toml) and `--executor` accept, for error messages and help."""
_DASK_SCHEMES = {"dask": "tcp", "dask+tls": "tls"}
"""Executor URL scheme -> the Dask comm protocol of the scheduler's address."""
T = TypeVar("T")

_AGENCY = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")


def check_agency(agency: str, where: str = "--agency") -> str:
    """Returns `agency` if it is a valid agency id, or raises ConfigError saying how to fix it."""
    if not isinstance(agency, str) or not _AGENCY.fullmatch(agency):
        raise ConfigError(
            f"{where}: agency id {agency!r} is invalid: use 2-63 lower-case letters, digits "
            "and dashes, starting with a letter or digit (e.g. customs-nl)"
        )
    return agency


def check_api_listen(address: str, where: str = "api_listen") -> tuple[str, int] | None:
    """The local API's (host, port), port 0 for any free one; None when it is off ("")."""
    if address == "":
        return None
    host, colon, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(
            f"{where}: {address!r} is not HOST:PORT (e.g. 127.0.0.1:8440, or port 0 for any "
            'free port), nor "" (no API)'
        )
    return host, int(port)


def check_address(address: str, where: str = "address") -> tuple[str, int]:
    """Returns (host, port) of a HOST:PORT address, or raises ConfigError."""
    host, colon, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            f"{where}: {address!r} is not HOST:PORT (e.g. 127.0.0.1:50051 or [::1]:50051)"
        )
    return host, int(port)


def check_executor(value: str, where: str = "executor") -> str | None:
    """The Dask scheduler address (`tcp://HOST:PORT` or `tls://HOST:PORT`) of an executor
    setting, or None for "local"; raises ConfigError naming `where` and the accepted forms."""
    if value == "local":
        return None
    scheme, sep, rest = value.partition("://") if isinstance(value, str) else ("", "", "")
    host, colon, port = rest.rpartition(":")
    bare = host.strip("[]")
    if (
        scheme not in _DASK_SCHEMES
        or not sep
        or not colon
        or not bare
        or any(c in bare for c in "/?#@ ")
        or not port.isdigit()
        or not 0 < int(port) < 65536
    ):
        raise ConfigError(
            f"{where}: {value!r} is not an executor; use {EXECUTOR_FORMS} (a Dask scheduler, "
            "e.g. dask://10.0.0.5:8786; see docs/DASK.md)"
        )
    return f"{_DASK_SCHEMES[scheme]}://{host}:{int(port)}"


@dataclass(frozen=True)
class ExecutorTLS:
    """`[executor_tls]`: the files of the node's TLS identity towards a Dask cluster
    (`dask+tls://`): the cluster's CA, and this node's certificate and key, each a path
    relative to the node directory or absolute."""

    ca: str
    cert: str
    key: str

    def to_toml(self) -> dict[str, str]:
        """Returns the table as written in node.toml."""
        return {"ca": self.ca, "cert": self.cert, "key": self.key}

    def paths(self, node_dir: Path) -> tuple[Path, Path, Path]:
        """(ca, cert, key) resolved against `node_dir`."""
        return (node_dir / self.ca, node_dir / self.cert, node_dir / self.key)

    def __post_init__(self) -> None:
        for name in ("ca", "cert", "key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(
                    f"[executor_tls] {name} must be the path of a PEM file (relative to the "
                    f"node directory or absolute), got {value!r}"
                )


@dataclass(frozen=True)
class PeerPolicy:
    """What one peer agency may ask of this node, and where to reach it."""

    agency: str
    address: str
    lists: tuple[str, ...] = ()
    modes: frozenset[str] = DEFAULT_MODES
    release_labels: bool = False
    max_set_size: int = 1_000_000
    sessions_per_hour: int = 60
    max_concurrent: int = 4
    screen_budget_per_day: int = 100_000

    def allows_list(self, name: str) -> bool:
        """Returns whether the peer may match against the list `name`."""
        return not self.lists or name in self.lists

    def allows_mode(self, mode: str) -> bool:
        """Returns whether the peer may run sessions of `mode`."""
        return mode in self.modes

    def to_json(self) -> dict[str, Any]:
        """Returns the peer's policy as `peer list --json` prints it, keys in the contract's
        order (DESIGN §6): scripts may rely on it."""
        return {
            "agency": self.agency,
            "address": self.address,
            "lists": list(self.lists),
            "modes": sorted(self.modes),
            "release_labels": self.release_labels,
            "sessions_per_hour": self.sessions_per_hour,
            "max_concurrent": self.max_concurrent,
            "max_set_size": self.max_set_size,
            "screen_budget": self.screen_budget_per_day,
        }

    def to_toml(self) -> dict[str, Any]:
        """Returns the peer's table as written in node.toml."""
        return {
            "address": self.address,
            "lists": list(self.lists),
            "modes": sorted(self.modes),
            "release_labels": self.release_labels,
            "max_set_size": self.max_set_size,
            "sessions_per_hour": self.sessions_per_hour,
            "max_concurrent": self.max_concurrent,
            "screen_budget_per_day": self.screen_budget_per_day,
        }

    def __post_init__(self) -> None:
        where = f"peer {self.agency!r}"
        check_agency(self.agency, where)
        check_address(self.address, f"{where} address")
        unknown = set(self.modes) - MODES
        if unknown:
            raise ConfigError(
                f"{where}: unknown mode(s) {', '.join(sorted(unknown))}; "
                f"use {', '.join(sorted(MODES))}"
            )
        for name in (
            "max_set_size",
            "sessions_per_hour",
            "max_concurrent",
            "screen_budget_per_day",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where}: {name} must be a non-negative integer, got {value!r}")


@dataclass(frozen=True)
class Webhook:
    """Where new hits are notified (`[[notify.webhook]]`): an http(s) URL and the signing secret.

    The secret never appears in a repr, a log, `config show` or `status`.
    """

    url: str
    secret: str = field(repr=False)

    def to_toml(self) -> dict[str, str]:
        """Returns the webhook's table as written in node.toml (with its secret)."""
        return {"url": self.url, "secret": self.secret}

    def to_display(self) -> dict[str, str]:
        """Returns the webhook's table with its secret masked, for `config show`."""
        return {"url": self.url, "secret": "********"}

    def __post_init__(self) -> None:
        example = 'e.g. url = "https://cases.customs.example/blindmatch"'
        if not isinstance(self.url, str):
            raise ConfigError(f"url must be a string ({example})")
        try:
            parts = urlsplit(self.url)
            parts.port  # noqa: B018 -- raises ValueError for a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"url {self.url!r} is not an http:// or https:// URL ({example})")
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                f"url of {parts.hostname} carries a user name or password: remove it from the "
                "URL (deliveries are authenticated by the secret's signature)"
            )
        if not isinstance(self.secret, str) or not self.secret.strip():
            raise ConfigError(
                f"webhook {self.url}: secret must be a non-empty string, the key both sides use "
                "to sign and check deliveries (make one with 'openssl rand -hex 32')"
            )


@dataclass(frozen=True)
class ScreenTarget:
    """A partner's list that real-time screening asks by default (`[[screen.target]]`).

    Only its form is checked here: whether `peer` is configured and allows screening is
    checked at each query (`node.rpc.live_screening`), so removing a peer never makes
    node.toml unloadable.
    """

    peer: str
    list: str

    def to_toml(self) -> dict[str, str]:
        """Returns the target's table as written in node.toml."""
        return {"peer": self.peer, "list": self.list}

    def __post_init__(self) -> None:
        check_agency(self.peer, "peer")
        try:
            check_list_name(self.list, "list")
        except InvalidInput as exc:
            raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class NodeConfig:
    """A node's configuration, loaded from `NODE_DIR/node.toml`."""

    node_dir: Path
    agency: str
    listen: str
    region: str = ""
    date_order: str = ""
    suite: str = DEFAULT_SUITE
    screen_epoch_hours: int = DEFAULT_SCREEN_EPOCH_HOURS
    idle_seconds: int = SERVING_LIMITS["idle_seconds"][0]
    max_sessions: int = SERVING_LIMITS["max_sessions"][0]
    grace_seconds: int = SERVING_LIMITS["grace_seconds"][0]
    retain_days: int = 0
    sweep_minutes: int = SWEEP_SETTINGS["sweep_minutes"][0]
    sweep_poll_seconds: int = SWEEP_SETTINGS["sweep_poll_seconds"][0]
    notify_retry_seconds: int = NOTIFY_RETRY_SECONDS[0]
    api_listen: str = DEFAULT_API_LISTEN
    api_tls: bool = False
    executor: str = "local"
    executor_tls: ExecutorTLS | None = None
    webhooks: tuple[Webhook, ...] = ()
    screen_targets: tuple[ScreenTarget, ...] = ()
    peers: Mapping[str, PeerPolicy] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def config_path(self) -> Path:
        """Path of node.toml."""
        return self.node_dir / CONFIG_FILE

    @property
    def store_path(self) -> Path:
        """Path of the SQLite store."""
        return self.node_dir / "store.sqlite"

    @property
    def tls_key(self) -> Path:
        """Path of the node's TLS private key."""
        return self.node_dir / "tls" / "node.key"

    @property
    def tls_cert(self) -> Path:
        """Path of the node's TLS certificate."""
        return self.node_dir / "tls" / "node.crt"

    @property
    def ca_cert(self) -> Path:
        """Path of the federation CA certificate the node trusts."""
        return self.node_dir / "tls" / "ca.crt"

    @property
    def tls_pending_key(self) -> Path:
        """Path of the key of a certificate request not installed yet (`init --csr-out`)."""
        return self.node_dir / "tls" / "pending.key"

    @property
    def crl(self) -> Path:
        """Path of the federation CRL the node installed (`crl install`)."""
        return self.node_dir / "tls" / "crl.pem"

    @property
    def audit_key(self) -> Path:
        """Path of the Ed25519 key that signs the audit log."""
        return self.node_dir / "audit.key"

    def peer(self, agency: str) -> PeerPolicy:
        """Returns the policy of peer `agency`, or raises ConfigError if it is not configured."""
        try:
            return self.peers[agency]
        except KeyError:
            raise ConfigError(
                f"peer {agency!r} is not configured in {self.config_path}: add it with "
                f"'blindmatch peer add {self.node_dir} --agency {agency} --address HOST:PORT'"
            ) from None

    def canon_context(self) -> CanonContext:
        """Returns how this node canonicalises identifiers (phone region, date order)."""
        order = cast(DateOrder | None, self.date_order or None)
        return CanonContext(region=self.region or None, date_order=order)

    def to_toml(self) -> dict[str, Any]:
        """Returns the configuration as written in node.toml."""
        return {
            "agency": self.agency,
            "listen": self.listen,
            "region": self.region,
            "date_order": self.date_order,
            "suite": self.suite,
            "screen_epoch_hours": self.screen_epoch_hours,
            **{name: getattr(self, name) for name in SERVING_LIMITS},
            "retain_days": self.retain_days,
            **{name: getattr(self, name) for name in SWEEP_SETTINGS},
            "notify_retry_seconds": self.notify_retry_seconds,
            "api_listen": self.api_listen,
            "api_tls": self.api_tls,
            "executor": self.executor,
            **({"executor_tls": self.executor_tls.to_toml()} if self.executor_tls else {}),
            **(
                {"notify": {"webhook": [w.to_toml() for w in self.webhooks]}}
                if self.webhooks
                else {}
            ),
            **(
                {"screen": {"target": [t.to_toml() for t in self.screen_targets]}}
                if self.screen_targets
                else {}
            ),
            "peers": {name: peer.to_toml() for name, peer in sorted(self.peers.items())},
        }

    def to_display(self) -> dict[str, Any]:
        """Returns `to_toml()` with every webhook secret masked, for `config show`."""
        table = self.to_toml()
        if self.webhooks:
            table["notify"] = {"webhook": [w.to_display() for w in self.webhooks]}
        return table

    def __post_init__(self) -> None:
        where = str(self.node_dir / CONFIG_FILE)
        check_agency(self.agency, f"{where}: agency")
        check_address(self.listen, f"{where}: listen")
        if self.date_order not in ("", "DMY", "MDY"):
            raise ConfigError(f'{where}: date_order {self.date_order!r} must be "", "DMY" or "MDY"')
        if self.suite not in SUITES:
            raise ConfigError(
                f"{where}: suite {self.suite!r} is unknown; use {', '.join(sorted(SUITES))}"
            )
        hours = self.screen_epoch_hours
        if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= 87_600:
            raise ConfigError(
                f"{where}: screen_epoch_hours must be a whole number of hours from 1 to 87600 "
                f"(ten years), got {hours!r}"
            )
        days = self.retain_days
        if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_RETAIN_DAYS:
            raise ConfigError(
                f"{where}: retain_days must be a whole number of days from 0 (keep records "
                f"forever) to {MAX_RETAIN_DAYS}, got {days!r}"
            )
        for name, (_, low, high) in {**SERVING_LIMITS, **SWEEP_SETTINGS}.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(
                    f"{where}: {name} must be a whole number from {low} to {high}, got {value!r}"
                )
        _, low, high = NOTIFY_RETRY_SECONDS
        retry = self.notify_retry_seconds
        if isinstance(retry, bool) or not isinstance(retry, int) or not low <= retry <= high:
            raise ConfigError(
                f"{where}: notify_retry_seconds must be a whole number of seconds from {low} "
                f"to {high}, got {retry!r}"
            )
        check_api_listen(self.api_listen, f"{where}: api_listen")
        if not isinstance(self.api_tls, bool):
            raise ConfigError(f"{where}: api_tls must be true or false, got {self.api_tls!r}")
        scheduler = check_executor(self.executor, f"{where}: executor")
        if scheduler and scheduler.startswith("tls://") and self.executor_tls is None:
            raise ConfigError(
                f"{where}: executor {self.executor} needs an [executor_tls] table with ca, cert "
                "and key (the Dask cluster's CA, this node's certificate and key; docs/DASK.md)"
            )
        urls = [w.url for w in self.webhooks]
        for url in sorted({u for u in urls if urls.count(u) > 1}):
            raise ConfigError(
                f"{where}: [[notify.webhook]] url {url} is configured twice; keep one table per URL"
            )
        targets = [(t.peer, t.list) for t in self.screen_targets]
        for peer, name in sorted({t for t in targets if targets.count(t) > 1}):
            raise ConfigError(
                f"{where}: [[screen.target]] peer {peer} list {name} is configured twice; keep "
                "one table per target"
            )
        try:
            self.canon_context()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    @classmethod
    def load(cls, node_dir: str | os.PathLike[str]) -> NodeConfig:
        """Reads `node_dir/node.toml`, or raises ConfigError naming the file and key at fault."""
        node_dir = Path(node_dir)
        path = node_dir / CONFIG_FILE
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(
                f"{path} not found: is {node_dir} a node directory? Create one with "
                "'blindmatch init NODE_DIR --agency ID --listen HOST:PORT --csr-out FILE'"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}); fix or re-create it") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
        return cls.from_toml(node_dir, data)

    @classmethod
    def from_toml(cls, node_dir: Path, data: Mapping[str, Any]) -> NodeConfig:
        """Builds a config from the parsed contents of node.toml."""
        path = node_dir / CONFIG_FILE
        known = {
            "agency",
            "listen",
            "region",
            "date_order",
            "suite",
            "screen_epoch_hours",
            "retain_days",
            "notify_retry_seconds",
            "api_listen",
            "api_tls",
            "executor",
            "executor_tls",
            "notify",
            "screen",
            "peers",
            *SERVING_LIMITS,
            *SWEEP_SETTINGS,
        }
        _no_unknown(data, known, str(path))
        peers_table = _get(data, "peers", dict, str(path), {})
        peers = {}
        for name, table in peers_table.items():
            where = f"{path}: [peers.{name}]"
            if not isinstance(table, dict):
                raise ConfigError(f"{where} must be a table")
            _no_unknown(table, set(PeerPolicy.__dataclass_fields__) - {"agency"}, where)
            if "address" not in table:
                raise ConfigError(f"{where}: missing key 'address' (HOST:PORT of the peer)")
            try:
                peers[name] = _peer_from_table(name, table, where)
            except ConfigError as exc:
                if str(path) in str(exc):
                    raise
                raise ConfigError(f"{where}: {exc}") from None
        for key in ("agency", "listen"):
            if key not in data:
                raise ConfigError(f"{path}: missing key {key!r}")
        return cls(
            node_dir=node_dir,
            agency=_get(data, "agency", str, str(path)),
            listen=_get(data, "listen", str, str(path)),
            region=_get(data, "region", str, str(path), ""),
            date_order=_get(data, "date_order", str, str(path), ""),
            suite=_get(data, "suite", str, str(path), DEFAULT_SUITE),
            screen_epoch_hours=_get(
                data, "screen_epoch_hours", int, str(path), DEFAULT_SCREEN_EPOCH_HOURS
            ),
            retain_days=_get(data, "retain_days", int, str(path), 0),
            notify_retry_seconds=_get(
                data, "notify_retry_seconds", int, str(path), NOTIFY_RETRY_SECONDS[0]
            ),
            api_listen=_get(data, "api_listen", str, str(path), DEFAULT_API_LISTEN),
            api_tls=_get(data, "api_tls", bool, str(path), False),
            executor=_get(data, "executor", str, str(path), "local"),
            executor_tls=_executor_tls_from_table(data, str(path)),
            webhooks=_webhooks_from_table(data, str(path)),
            screen_targets=_screen_targets_from_table(data, str(path)),
            peers=MappingProxyType(peers),
            **{
                name: _get(data, name, int, str(path), default)
                for name, (default, _, _) in {**SERVING_LIMITS, **SWEEP_SETTINGS}.items()
            },
        )


def _peer_from_table(name: str, table: Mapping[str, Any], where: str) -> PeerPolicy:
    lists = _get(table, "lists", list, where, [])
    modes = _get(table, "modes", list, where, sorted(DEFAULT_MODES))
    return PeerPolicy(
        agency=name,
        address=_get(table, "address", str, where),
        lists=tuple(_strings(lists, f"{where} lists")),
        modes=frozenset(_strings(modes, f"{where} modes")),
        release_labels=_get(table, "release_labels", bool, where, False),
        max_set_size=_get(table, "max_set_size", int, where, 1_000_000),
        sessions_per_hour=_get(table, "sessions_per_hour", int, where, 60),
        max_concurrent=_get(table, "max_concurrent", int, where, 4),
        screen_budget_per_day=_get(table, "screen_budget_per_day", int, where, 100_000),
    )


def _executor_tls_from_table(data: Mapping[str, Any], path: str) -> ExecutorTLS | None:
    """The `[executor_tls]` table of node.toml, if any (ConfigError naming what is wrong)."""
    if "executor_tls" not in data:
        return None
    where = f"{path}: [executor_tls]"
    table = _get(data, "executor_tls", dict, path)
    fields = {"ca", "cert", "key"}
    _no_unknown(table, fields, where)
    for key in sorted(fields - set(table)):
        raise ConfigError(
            f"{where}: missing key {key!r} (ca: the Dask cluster's CA certificate; cert, key: "
            "this node's certificate and key for the cluster; see docs/DASK.md)"
        )
    try:
        return ExecutorTLS(*(_get(table, name, str, where) for name in ("ca", "cert", "key")))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _webhooks_from_table(data: Mapping[str, Any], path: str) -> tuple[Webhook, ...]:
    """The `[[notify.webhook]]` tables of node.toml, each checked (ConfigError naming which)."""
    fields = (
        ("url", "where new hits are POSTed, e.g. https://cases.customs.example/blindmatch"),
        ("secret", "the key that signs each delivery; make one with 'openssl rand -hex 32'"),
    )
    return _tables_of_strings(data, path, "notify", "webhook", fields, Webhook)


def _screen_targets_from_table(data: Mapping[str, Any], path: str) -> tuple[ScreenTarget, ...]:
    """The `[[screen.target]]` tables of node.toml, each checked (ConfigError naming which)."""
    fields = (
        ("peer", "the agency id of a configured peer, e.g. police-nl"),
        ("list", "the name of that peer's list to screen against, e.g. watchlist"),
    )
    return _tables_of_strings(data, path, "screen", "target", fields, ScreenTarget)


def _tables_of_strings(
    data: Mapping[str, Any],
    path: str,
    section: str,
    item: str,
    fields: tuple[tuple[str, str], ...],
    build: Callable[..., T],
) -> tuple[T, ...]:
    """`[[section.item]]` tables whose keys are exactly `fields` (name, meaning), all strings,
    each built with `build(*values)`; a ConfigError names the table's number and the fix."""
    outer = _get(data, section, dict, path, {})
    _no_unknown(outer, {item}, f"{path}: [{section}]")
    tables = _get(outer, item, list, f"{path}: [{section}]", [])
    names = [name for name, _ in fields]
    built = []
    for number, table in enumerate(tables, 1):
        where = f"{path}: [[{section}.{item}]] number {number}"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table with {' and '.join(names)}")
        _no_unknown(table, set(names), where)
        for key, meaning in fields:
            if key not in table:
                raise ConfigError(f"{where}: missing key {key!r} ({meaning})")
        try:
            built.append(build(*(_get(table, name, str, where) for name in names)))
        except ConfigError as exc:
            if where in str(exc):
                raise
            raise ConfigError(f"{where}: {exc}") from None
    return tuple(built)


def _no_unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}; known: {', '.join(sorted(known))}")


def _get(table: Mapping[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
    value = table.get(key, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(
            f"{where}: key {key!r} must be a {kind.__name__}, got {type(value).__name__}"
        )
    return value


def _strings(values: Iterable[Any], where: str) -> list[str]:
    out = list(values)
    if not all(isinstance(v, str) for v in out):
        raise ConfigError(f"{where}: every entry must be a string")
    return out


def write_config(config: NodeConfig) -> None:
    """Writes `config` to its node.toml atomically (temporary file, then os.replace)."""
    path = config.config_path
    fd, tmp = tempfile.mkstemp(prefix=".node.toml.", dir=config.node_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            tomli_w.dump(config.to_toml(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def with_peer(
    config: NodeConfig, agency: str, changes: Mapping[str, Any], *, new: bool
) -> NodeConfig:
    """Returns `config` with peer `agency` added (`new`) or changed; writes nothing.

    Only the policy fields in `changes` change; a new peer takes the defaults for
    the rest. Raises ConfigError for a peer that exists (add) or does not (set),
    this node's own agency, or a policy that does not validate.
    """
    check_agency(agency)
    if agency == config.agency:
        raise ConfigError(f"peer {agency!r} is this node's own agency; add another agency")
    current = config.peers.get(agency)
    if new and current is not None:
        raise ConfigError(
            f"peer {agency} is already configured; change it with 'blindmatch peer set "
            f"{config.node_dir} --agency {agency} --OPTION VALUE' (only the options given change)"
        )
    if current is None and not new:
        config.peer(agency)  # raises, saying how to add it
    if new and "address" not in changes:
        raise ConfigError(f"a new peer needs --address HOST:PORT (where {agency} listens)")
    policy = dataclasses.replace(current, **changes) if current else PeerPolicy(agency, **changes)
    return dataclasses.replace(config, peers=MappingProxyType({**config.peers, agency: policy}))


def without_peer(config: NodeConfig, agency: str) -> NodeConfig:
    """Returns `config` without peer `agency`; raises ConfigError if it is not configured."""
    config.peer(agency)
    return dataclasses.replace(
        config, peers=MappingProxyType({k: v for k, v in config.peers.items() if k != agency})
    )


SETTABLE: Mapping[str, str] = MappingProxyType(
    {
        "region": "default phone region for numbers without +CC (ISO 3166 alpha-2), or ''",
        "date_order": "how to read slashed dates both ways valid: DMY, MDY, or '' to refuse them",
        "suite": f"suite of the sessions this node initiates: {', '.join(sorted(SUITES))}",
        "screen_epoch_hours": "screening key epochs rotate this often (1-87600)",
        "retain_days": "records not stored (ingested) for this many days expire, for lists "
        "without their own --retain-days (0: keep forever)",
        "notify_retry_seconds": "first retry of a failed webhook delivery, in seconds; each "
        f"next one waits twice as long, up to 600 ({NOTIFY_RETRY_SECONDS[1]}-"
        f"{NOTIFY_RETRY_SECONDS[2]})",
        **{
            name: f"serving limit, a whole number from {low} to {high}"
            for name, (_, low, high) in SERVING_LIMITS.items()
        },
        "sweep_minutes": "serve sweeps every operations list with every allowed peer this often, "
        "in minutes (0-10080; 0: only when a list changes)",
        "sweep_poll_seconds": "serve looks this often whether an operations list changed, and "
        "sweeps it when it did (1-3600)",
        "api_listen": "HOST:PORT of the local HTTP API (port 0: any free port, named in serve's "
        "log; '' turns the API off); applies after a restart",
        "api_tls": "true to serve the API over HTTPS with the node's certificate; applies after "
        "a restart",
        "executor": f"where batches of hashing and multiplication run: {EXECUTOR_FORMS} "
        "(a Dask cluster, docs/DASK.md); commands' --executor overrides it; serve applies it "
        "after a restart",
    }
)
"""Top-level node.toml keys `blindmatch config set` may change, with what each means."""


def with_option(config: NodeConfig, key: str, value: str) -> NodeConfig:
    """Returns `config` with one top-level key set from its text `value`; writes nothing.

    The value is checked as `NodeConfig.load` would check it. Raises ConfigError
    for a key that `config set` may not change or a value that is not usable.
    """
    if key not in SETTABLE:
        hint = "; peers are changed with 'blindmatch peer add'" if key == "peers" else ""
        raise ConfigError(
            f"{key!r} cannot be set with 'config set'; settable keys: {', '.join(SETTABLE)}{hint}"
        )
    new: Any = value.strip()
    if isinstance(getattr(config, key), bool):
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if new.lower() not in words:
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        new = words[new.lower()]
    elif isinstance(getattr(config, key), int):
        try:
            new = int(new)
        except ValueError:
            raise ConfigError(f"{key} must be a whole number, got {value!r}") from None
    elif key in ("region", "date_order"):
        new = new.upper()
    return dataclasses.replace(config, **{key: new})  # __post_init__ validates
