"""`ca` and `init`: the federation's certificate authority, and a node's creation and requests.

The CA's commands (`ca init|sign|revoke|crl`) run where the CA's key is, never
on a node. `init` creates a node (or, on an existing node, a renewal) with a
certificate request to send to the CA operator, written to `--csr-out FILE` or
else to NODE_DIR/node.csr; `init --ca` does request, signature and install in
one step, for demos and tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
from pathlib import Path
from types import MappingProxyType

from crypto.groups import SUITES
from node.cli.certificates import install_certificate, read_file
from node.cli.common import (
    Subparsers,
    operator_name,
)
from node.data.store import Store
from node.errors import ConfigError
from node.setup import pki
from node.setup.config import (
    NodeConfig,
    check_address,
    check_agency,
    write_config,
)

# -- ca init|sign|revoke|crl --------------------------------------------------------------------


def add_ca(subparsers: Subparsers) -> None:
    ca = subparsers.add_parser("ca", help="manage the federation certificate authority")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True, metavar="COMMAND")
    init = ca_sub.add_parser("init", help="create a federation CA (ca.key, ca.crt)")
    init.add_argument("ca_dir", metavar="CA_DIR", type=Path)
    init.add_argument("--name", default="blindmatch federation CA", help="CA common name")
    init.set_defaults(func=_cmd_ca_init)
    sign = ca_sub.add_parser("sign", help="issue a node certificate for a request from 'init'")
    sign.add_argument("ca_dir", metavar="CA_DIR", type=Path)
    sign.add_argument("csr_file", metavar="CSR_FILE", type=Path)
    sign.add_argument(
        "--out", metavar="CERT_FILE", type=Path, help="where to write it (default: CSR_FILE.crt)"
    )
    sign.add_argument(
        "--days", type=int, default=pki.NODE_DAYS, help=f"validity (default {pki.NODE_DAYS})"
    )
    sign.set_defaults(func=_cmd_ca_sign)
    revoke = ca_sub.add_parser("revoke", help="revoke certificates; then publish 'ca crl'")
    revoke.add_argument("ca_dir", metavar="CA_DIR", type=Path)
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--agency", metavar="ID", help="every certificate issued to the agency")
    which.add_argument("--serial", metavar="HEX", help="one certificate, as 'ca sign' printed it")
    revoke.add_argument(
        "--reason",
        metavar="TEXT",
        help=(
            "why, kept in the CA's index; one of "
            + ", ".join(pki.REASONS)
            + " is also written into the CRL as its reason code"
        ),
    )
    revoke.set_defaults(func=_cmd_ca_revoke)
    crl = ca_sub.add_parser("crl", help="write a signed revocation list for the nodes to install")
    crl.add_argument("ca_dir", metavar="CA_DIR", type=Path)
    crl.add_argument(
        "--out", metavar="CRL_FILE", type=Path, help="where to write it (default: CA_DIR/crl.pem)"
    )
    crl.set_defaults(func=_cmd_ca_crl)


def _cmd_ca_init(args: argparse.Namespace) -> int:
    cert = pki.init_ca(args.ca_dir, args.name)
    print(f"created CA {args.name!r}: {cert} (keep {args.ca_dir / 'ca.key'} offline)")
    return 0


def _write_output(path: Path, data: bytes) -> None:
    """Writes a request, certificate or CRL (public) where the operator asked."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"cannot write {path} ({exc.strerror})") from None


def _cmd_ca_sign(args: argparse.Namespace) -> int:
    csr_file: Path = args.csr_file
    out: Path = args.out or csr_file.with_suffix(".crt")
    if out == csr_file:
        out = csr_file.with_name(csr_file.name + ".crt")
    request = read_file(csr_file, "certificate request")
    earlier = [
        e
        for e in pki.issued_certificates(args.ca_dir)
        if e.revoked_at is None and e.not_after > dt.datetime.now(dt.UTC)
    ]
    issued = pki.sign_request(args.ca_dir, request, days=args.days)
    _write_output(out, issued.certificate)
    info = issued.info
    hosts = ", ".join(issued.hosts) or "none besides localhost"
    print(
        f"signed {info.agency}: serial {pki.serial_text(info.serial)}, valid until "
        f"{info.not_after:%Y-%m-%d} ({args.days} days), hosts {hosts}; wrote {out}"
    )
    same = [pki.serial_text(e.serial) for e in earlier if e.agency == info.agency]
    if same:
        print(
            f"{info.agency} also holds valid certificate(s) {', '.join(same)}; if this one "
            f"replaces them, revoke them once it is installed ('blindmatch ca revoke {args.ca_dir} "
            "--serial HEX')"
        )
    print(
        f"send {out} and {args.ca_dir / 'ca.crt'} to {info.agency}'s operator, who runs "
        f"'blindmatch cert install NODE_DIR {out.name} --ca-cert ca.crt'"
    )
    return 0


def _cmd_ca_revoke(args: argparse.Namespace) -> int:
    serial = pki.parse_serial(args.serial) if args.serial is not None else None
    revoked, already = pki.revoke(
        args.ca_dir, agency=args.agency, serial=serial, reason=args.reason
    )
    for entry in revoked:
        reason = f" ({entry.reason})" if entry.reason else ""
        print(f"revoked {entry.agency}'s certificate {pki.serial_text(entry.serial)}{reason}")
    for entry in already:
        when = f"{entry.revoked_at:%Y-%m-%d}" if entry.revoked_at else "?"
        print(f"{entry.agency}'s certificate {pki.serial_text(entry.serial)} was revoked on {when}")
    print(
        f"publish it: 'blindmatch ca crl {args.ca_dir} --out crl.pem', then on every node "
        "'blindmatch crl install NODE_DIR crl.pem'"
    )
    return 0


def _cmd_ca_crl(args: argparse.Namespace) -> int:
    out: Path = args.out or args.ca_dir / "crl.pem"
    crl, info = pki.make_crl(args.ca_dir)
    _write_output(out, crl)
    next_update = f"{info.next_update:%Y-%m-%d}" if info.next_update else "none"
    print(
        f"wrote CRL number {info.number} with {info.revoked} revoked certificate(s) to {out} "
        f"(next update due {next_update}); install it on every node: 'blindmatch crl install "
        f"NODE_DIR {out.name}'"
    )
    return 0


# -- init ---------------------------------------------------------------------------------------

REQUEST_FILE = "node.csr"
"""Where `init` writes the certificate request without --csr-out, inside NODE_DIR."""


def add_init(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "init",
        help="create a node directory with a certificate request (or renew an existing node's)",
    )
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument("--agency", required=True, help="agency id, e.g. customs-nl")
    p.add_argument("--listen", required=True, metavar="HOST:PORT")
    issuing = p.add_mutually_exclusive_group()
    issuing.add_argument(
        "--csr-out",
        metavar="FILE",
        type=Path,
        help="write the certificate request for the federation CA to FILE (default: "
        f"NODE_DIR/{REQUEST_FILE}); on an existing node, a renewal request",
    )
    issuing.add_argument(
        "--ca", metavar="CA_DIR", type=Path, help="sign with a CA at hand (demos and tests)"
    )
    p.add_argument("--region", default="", metavar="CC", help="default phone region, e.g. NL")
    p.add_argument("--date-order", default="", choices=["DMY", "MDY"])
    p.add_argument("--suite", default="x25519-blake3", choices=sorted(SUITES))
    p.add_argument("--operator", help="who creates it (default: the OS user; audited)")
    p.set_defaults(func=_cmd_init)


def _next_steps(node_dir: Path, request: Path) -> str:
    return (
        f"next: 1. send {request} to the federation CA operator, who runs 'blindmatch ca sign "
        f"CA_DIR {request.name}'; 2. install what comes back: 'blindmatch cert install "
        f"{node_dir} CERT_FILE --ca-cert CA_CERT_FILE'"
    )


def _request_path(args: argparse.Namespace) -> Path:
    """Where the request goes: --csr-out, else NODE_DIR/node.csr."""
    return Path(args.csr_out or args.node_dir / REQUEST_FILE)


def _renew(args: argparse.Namespace, host: str) -> int:
    """Makes a new pending key and request for an existing node; nothing else changes."""
    node_dir: Path = args.node_dir
    out = _request_path(args)
    config = NodeConfig.load(node_dir)
    if config.agency != args.agency:
        raise ConfigError(
            f"{node_dir} is the node of agency {config.agency}, not {args.agency}; a renewal "
            f"request names the node's own agency (--agency {config.agency})"
        )
    request = pki.make_request(node_dir, config.agency, (host,))
    try:
        _write_output(out, request)
    except BaseException:
        config.tls_pending_key.unlink(missing_ok=True)  # so that the request can be made again
        raise
    print(
        f"wrote a renewal request for {config.agency} to {out}; the installed "
        "certificate, the store and the audit log are unchanged until 'cert install'"
    )
    print(_next_steps(node_dir, out))
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    node_dir: Path = args.node_dir
    check_agency(args.agency)
    host, _ = check_address(args.listen, "--listen")
    if (node_dir / "node.toml").exists():
        if args.ca is None:
            return _renew(args, host)
        raise ConfigError(
            f"{node_dir} already holds a node; choose another NODE_DIR, or renew its certificate "
            f"without --ca: 'blindmatch init {node_dir} --agency ID --listen HOST:PORT' (the "
            f"request goes to {node_dir / REQUEST_FILE}, or to --csr-out FILE)"
        )
    if (node_dir / "store.sqlite").exists():
        raise ConfigError(f"{node_dir} already holds a node; choose another NODE_DIR")
    config = NodeConfig(  # validates region, date order and suite before anything is written
        node_dir=node_dir,
        agency=args.agency,
        listen=args.listen,
        region=args.region.upper(),
        date_order=args.date_order,
        suite=args.suite,
        peers=MappingProxyType({}),
    )
    created = not node_dir.exists()
    try:
        node_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        node_dir.chmod(0o700)  # plaintext identifiers live here: the node's user only
        pki.generate_audit_key(node_dir)
        Store.open(node_dir, create=True).close()
        request = pki.make_request(node_dir, args.agency, (host,))
        if args.ca is not None:
            # The one-step path goes the same way as a request sent to the CA operator.
            issued = pki.sign_request(args.ca, request)
            certificate, ca_certificate = issued.certificate, issued.ca_certificate
            install_certificate(config, certificate, ca_certificate, operator_name(args))
        else:
            _write_output(_request_path(args), request)
        write_config(config)
    except BaseException:
        if created:
            shutil.rmtree(node_dir, ignore_errors=True)
        raise
    print(f"created node {args.agency!r} in {node_dir} (listen {args.listen})")
    if args.ca is None:
        print(f"wrote its certificate request to {_request_path(args)}")
        print(_next_steps(node_dir, _request_path(args)))
    return 0
