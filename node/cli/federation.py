"""`ca` and `init`: the federation's certificate authority and a node's creation."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from types import MappingProxyType

from crypto.groups import SUITES
from node.cli.common import (
    Subparsers,
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

# -- ca init ------------------------------------------------------------------------------------


def add_ca(subparsers: Subparsers) -> None:
    ca = subparsers.add_parser("ca", help="manage the federation certificate authority")
    ca_sub = ca.add_subparsers(dest="ca_command", required=True, metavar="COMMAND")
    init = ca_sub.add_parser("init", help="create a federation CA (ca.key, ca.crt)")
    init.add_argument("ca_dir", metavar="CA_DIR", type=Path)
    init.add_argument("--name", default="blindmatch federation CA", help="CA common name")
    init.set_defaults(func=_cmd_ca_init)


def _cmd_ca_init(args: argparse.Namespace) -> int:
    cert = pki.init_ca(args.ca_dir, args.name)
    print(f"created CA {args.name!r}: {cert} (keep {args.ca_dir / 'ca.key'} offline)")
    return 0


# -- init ---------------------------------------------------------------------------------------


def add_init(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("init", help="create a node directory")
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument("--agency", required=True, help="agency id, e.g. customs-nl")
    p.add_argument("--listen", required=True, metavar="HOST:PORT")
    p.add_argument("--ca", required=True, metavar="CA_DIR", type=Path)
    p.add_argument("--region", default="", metavar="CC", help="default phone region, e.g. NL")
    p.add_argument("--date-order", default="", choices=["DMY", "MDY"])
    p.add_argument("--suite", default="x25519-blake3", choices=sorted(SUITES))
    p.set_defaults(func=_cmd_init)


def _cmd_init(args: argparse.Namespace) -> int:
    node_dir: Path = args.node_dir
    check_agency(args.agency)
    host, _ = check_address(args.listen, "--listen")
    if (node_dir / "node.toml").exists() or (node_dir / "store.sqlite").exists():
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
        pki.issue_node_certificate(args.ca, node_dir, args.agency, (host,))
        pki.generate_audit_key(node_dir)
        Store.open(node_dir, create=True).close()
        write_config(config)
    except BaseException:
        if created:
            shutil.rmtree(node_dir, ignore_errors=True)
        raise
    print(f"created node {args.agency!r} in {node_dir} (listen {args.listen})")
    return 0
