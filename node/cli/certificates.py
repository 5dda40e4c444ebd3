"""`cert install` and `crl install`: a node's operator installs what the federation CA sent."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from node.cli.common import Subparsers, operator_name
from node.data.store import Store
from node.errors import ConfigError, NotFound
from node.setup.config import NodeConfig

if TYPE_CHECKING:
    from node.setup import pki

__all__ = ["add_cert", "add_crl", "install_certificate"]


def read_file(path: Path, what: str) -> bytes:
    """The bytes of a file named on the command line, or an error saying what is wrong."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{what} {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path} ({exc.strerror})") from None


def install_certificate(
    config: NodeConfig,
    certificate: bytes,
    ca_certificate: bytes,
    operator: str,
    names: tuple[str, str] = ("the certificate", "the CA certificate"),
) -> pki.CertificateInfo:
    """Checks and installs the node's certificate with a `cert.installed` audit entry, at once."""
    from node.data import audit
    from node.setup import pki

    info = pki.check_certificate(
        config.node_dir, config.agency, certificate, ca_certificate, names=names
    )
    key = audit.load_signing_key(config.audit_key)
    fields = {
        "operator": operator,
        "serial": pki.serial_text(info.serial),
        "not_after": info.not_after.isoformat(timespec="seconds"),
    }
    with Store.open(config.store_path) as store, store.transaction() as conn:
        audit.append(conn, key, "cert.installed", fields)
        # Inside the transaction: an install that fails leaves no audit entry.
        pki.install_certificate(config.node_dir, certificate, ca_certificate)
    return info


# -- cert install -------------------------------------------------------------------------------


def add_cert(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("cert", help="install the node's certificate from the federation CA")
    sub = p.add_subparsers(dest="cert_command", required=True, metavar="COMMAND")
    install = sub.add_parser(
        "install",
        help="check and install the certificate the CA signed for this node's request (audited)",
    )
    install.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    install.add_argument("cert_file", metavar="CERT_FILE", type=Path, help="from 'ca sign'")
    install.add_argument(
        "--ca-cert",
        required=True,
        metavar="CA_CERT_FILE",
        type=Path,
        help="the federation CA's certificate (its ca.crt)",
    )
    install.add_argument("--operator", help="who installs it (default: the OS user)")
    install.set_defaults(func=_cmd_cert_install)


def _cmd_cert_install(args: argparse.Namespace) -> int:
    from node.setup import pki

    config = NodeConfig.load(args.node_dir)
    certificate = read_file(args.cert_file, "certificate")
    ca_certificate = read_file(args.ca_cert, "CA certificate")
    names = (str(args.cert_file), str(args.ca_cert))
    info = install_certificate(config, certificate, ca_certificate, operator_name(args), names)
    print(
        f"installed the certificate of {info.agency} (serial {pki.serial_text(info.serial)}, "
        f"valid until {info.not_after:%Y-%m-%d}) in {config.tls_cert.parent}"
    )
    print("a running 'blindmatch serve' uses it for every new connection, without a restart")
    return 0


# -- crl install --------------------------------------------------------------------------------


def add_crl(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("crl", help="install the federation CA's revocation list")
    sub = p.add_subparsers(dest="crl_command", required=True, metavar="COMMAND")
    install = sub.add_parser(
        "install",
        help="check and install a CRL from 'ca crl'; revoked peers are refused both ways (audited)",
    )
    install.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    install.add_argument("crl_file", metavar="CRL_FILE", type=Path, help="from 'ca crl'")
    install.add_argument("--operator", help="who installs it (default: the OS user)")
    install.set_defaults(func=_cmd_crl_install)


def _cmd_crl_install(args: argparse.Namespace) -> int:
    from node.data import audit
    from node.setup import pki

    config = NodeConfig.load(args.node_dir)
    data = read_file(args.crl_file, "CRL")
    info = pki.check_crl(config.node_dir, data, str(args.crl_file))
    current = pki.installed_crl(config.node_dir)
    if current is not None and current.number == info.number:
        print(f"CRL number {info.number} is installed already; nothing changed")
        return 0
    fields = {"operator": operator_name(args), "crl_number": info.number, "revoked": info.revoked}
    key = audit.load_signing_key(config.audit_key)
    with Store.open(config.store_path) as store, store.transaction() as conn:
        audit.append(conn, key, "crl.installed", fields)
        pki.install_crl(config.node_dir, data)
    print(
        f"installed CRL number {info.number} ({info.revoked} revoked) as {config.crl}; a running "
        "'blindmatch serve' refuses revoked peers from its next call, and 'match' refuses to "
        "start sessions with them"
    )
    if info.next_update is not None and info.next_update < dt.datetime.now(dt.UTC):
        print(
            f"warning: this CRL's next update was due {info.next_update:%Y-%m-%d}; ask the "
            "federation CA operator for a newer one ('blindmatch ca crl')"
        )
    return 0
