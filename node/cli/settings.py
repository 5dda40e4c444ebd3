"""node.toml: `config set|show`, and `peer add|set|remove|list` (each change audited)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from node.cli.common import (
    Subparsers,
    csv_option,
    operator_name,
    print_json,
    write_audited,
)
from node.cli.tables import format_table
from node.errors import ConfigError
from node.setup.config import (
    MODES,
    SETTABLE,
    NodeConfig,
    PeerPolicy,
    with_option,
    with_peer,
    without_peer,
)

# -- config set / show -------------------------------------------------------------------------


def add_config(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("config", help="show or change the node's settings (node.toml)")
    sub = p.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    keys = "\n".join(f"  {key:<20} {meaning}" for key, meaning in SETTABLE.items())
    set_ = sub.add_parser(
        "set",
        help="change one setting, e.g. 'config set NODE_DIR date_order DMY' (audited)",
        epilog=f"settable keys:\n{keys}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    set_.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    set_.add_argument("key", metavar="KEY", help="a key listed below")
    set_.add_argument("value", metavar="VALUE", help="the new value ('' to unset a text key)")
    set_.add_argument("--operator", help="who changes it (default: the OS user)")
    set_.set_defaults(func=_cmd_config_set)
    show = sub.add_parser("show", help="print the node's settings")
    show.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    show.add_argument("--json", action="store_true", help="print the settings as JSON")
    show.set_defaults(func=_cmd_config_show)


def _cmd_config_set(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.node_dir)
    updated = with_option(config, args.key, args.value)
    before, after = getattr(config, args.key), getattr(updated, args.key)
    fields = {"operator": operator_name(args), "key": args.key, "before": before, "after": after}
    write_audited(config, updated, "config.set", fields)
    print(f"{args.key}: {before!r} -> {after!r} in {config.config_path}")
    if args.key in ("region", "date_order"):
        print("applies to ingests from now on; lists already stored keep their elements")
    elif args.key in ("max_sessions", "grace_seconds", "api_listen", "api_tls", "executor"):
        print("a running 'blindmatch serve' applies this after a restart")
    else:
        print("a running 'blindmatch serve' applies it within seconds")
    return 0


def _cmd_config_show(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.node_dir)
    settings = {k: v for k, v in config.to_display().items() if k != "peers"}  # secrets masked
    if args.json:
        print_json(settings)
    else:
        print(format_table(["key", "value"], [[k, repr(v)] for k, v in settings.items()]))
    return 0


# -- peer add -----------------------------------------------------------------------------------


def _peer_options(p: argparse.ArgumentParser, *, new: bool) -> None:
    """The policy options of `peer add` (defaults for what is not given) and `peer set`."""
    p.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    p.add_argument("--agency", required=True, help="the peer's agency id")
    p.add_argument("--address", required=new, metavar="HOST:PORT", help="where the peer listens")
    p.add_argument("--lists", metavar="L1,L2", help="lists it may match, comma-separated ('': all)")
    p.add_argument(
        "--modes", metavar="MODES", help=f"allowed modes, from {','.join(sorted(MODES))}"
    )
    labels = p.add_mutually_exclusive_group()
    labels.add_argument(
        "--release-labels", action="store_true", default=None, help="release labels on a match"
    )
    labels.add_argument(
        "--withhold-labels", action="store_false", dest="release_labels", help="release none"
    )
    p.add_argument("--max-set-size", type=int, metavar="N", help="largest set it may declare")
    p.add_argument("--sessions-per-hour", type=int, metavar="N", help="sessions per direction")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="calls served at once")
    p.add_argument(
        "--screen-budget",
        "--screen-budget-per-day",
        type=int,
        metavar="N",
        dest="screen_budget_per_day",
        help="screening items evaluated for it per day",
    )
    p.add_argument("--operator", help="who changes the policy (default: the OS user)")


def add_peer(subparsers: Subparsers) -> None:
    peer = subparsers.add_parser("peer", help="manage peer agencies and their policy")
    peer_sub = peer.add_subparsers(dest="peer_command", required=True, metavar="COMMAND")
    defaults = PeerPolicy("default", "localhost:1")
    add = peer_sub.add_parser(
        "add",
        help="add a peer; options not given take their defaults",
        epilog=(
            f"defaults: modes {','.join(sorted(defaults.modes))}, labels withheld, "
            f"--max-set-size {defaults.max_set_size}, --sessions-per-hour "
            f"{defaults.sessions_per_hour}, --max-concurrent {defaults.max_concurrent}, "
            f"--screen-budget {defaults.screen_budget_per_day}"
        ),
    )
    _peer_options(add, new=True)
    add.set_defaults(func=_cmd_peer_change, new=True)
    set_ = peer_sub.add_parser("set", help="change only the given options of a peer's policy")
    _peer_options(set_, new=False)
    set_.set_defaults(func=_cmd_peer_change, new=False)
    remove = peer_sub.add_parser("remove", help="remove a peer and its policy")
    remove.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    remove.add_argument("--agency", required=True, help="the peer's agency id")
    remove.add_argument("--operator", help="who removes it (default: the OS user)")
    remove.set_defaults(func=_cmd_peer_remove)
    list_ = peer_sub.add_parser("list", help="show every peer and its policy")
    list_.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    list_.add_argument("--json", action="store_true", help="print the peers as JSON")
    list_.set_defaults(func=_cmd_peer_list)


def _describe_peer(policy: PeerPolicy) -> str:
    lists = ", ".join(policy.lists) or "all lists"
    labels = "labels released" if policy.release_labels else "labels withheld"
    return (
        f"peer {policy.agency} at {policy.address}: {lists}; "
        f"modes {', '.join(sorted(policy.modes))}; {labels}; {policy.sessions_per_hour}/h, "
        f"{policy.max_concurrent} at once, sets up to {policy.max_set_size:,}, "
        f"screening {policy.screen_budget_per_day:,}/day"
    )


_POLICY_OPTIONS = tuple(f.name for f in dataclasses.fields(PeerPolicy) if f.name != "agency")
"""Every policy field, each an option of `peer add` and `peer set` (`_peer_options`)."""


def _cmd_peer_change(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.node_dir)
    given = {name: getattr(args, name) for name in _POLICY_OPTIONS}
    changes: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
    if "lists" in changes:
        changes["lists"] = csv_option(changes["lists"])
    if "modes" in changes:
        changes["modes"] = frozenset(csv_option(changes["modes"]))
    if not args.new and not changes:
        raise ConfigError("peer set changes nothing without an option; see 'peer set --help'")
    updated = with_peer(config, args.agency, changes, new=args.new)
    before = config.peers.get(args.agency)
    after = updated.peers[args.agency]
    write_audited(
        config,
        updated,
        "peer.added" if args.new else "peer.changed",
        {
            "operator": operator_name(args),
            "peer": args.agency,
            "before": before.to_json() if before else None,
            "after": after.to_json(),
        },
    )
    print(_describe_peer(after))
    print("a running 'blindmatch serve' applies it within seconds")
    return 0


def _cmd_peer_remove(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.node_dir)
    updated = without_peer(config, args.agency)
    before = config.peers[args.agency].to_json()
    fields = {"operator": operator_name(args), "peer": args.agency, "before": before, "after": None}
    write_audited(config, updated, "peer.removed", fields)
    print(f"peer {args.agency} removed from {config.config_path}")
    return 0


def _cmd_peer_list(args: argparse.Namespace) -> int:
    peers = [policy for _, policy in sorted(NodeConfig.load(args.node_dir).peers.items())]
    if args.json:
        print_json([policy.to_json() for policy in peers])
    elif not peers:
        print(f"no peers in {args.node_dir}; add one with 'blindmatch peer add'")
    else:
        for policy in peers:
            print(_describe_peer(policy))
    return 0
