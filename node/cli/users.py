"""`user add|list|remove`: the people and systems that may use the local HTTP API.

`user add` prints a new bearer token once; the store keeps only its SHA-256
(`node.data.users` says why that is enough). Adding and removing a user are
audited (`user.added`, `user.removed`) with who did it, in the same
transaction; a removed user's token is refused from the next request on, also
by a running `serve`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from node.cli.common import PROG, Subparsers, operator_name, print_json
from node.cli.tables import format_table
from node.data import users
from node.data.store import Store, utc_now
from node.setup.config import NodeConfig


def add_user(subparsers: Subparsers) -> None:
    p = subparsers.add_parser("user", help="manage the users of the local HTTP API (tokens)")
    sub = p.add_subparsers(dest="user_command", required=True, metavar="COMMAND")
    add = sub.add_parser(
        "add",
        help="add a user and print its API token, once (audited)",
        description=(
            "Adds a user of the local HTTP API and prints its bearer token once: store it "
            "where the person or system that uses it keeps secrets. The node keeps only the "
            "token's SHA-256. An analyst may read, screen and acknowledge hits; an admin may "
            "also add, replace and remove records. A lost token cannot be shown again: "
            f"remove the user and add it again ('{PROG} user remove')."
        ),
    )
    add.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    add.add_argument(
        "--name",
        required=True,
        help=f"who uses the token, as the audit log names it (1-{users.MAX_NAME_CHARS} chars)",
    )
    add.add_argument("--role", required=True, choices=users.ROLES)
    add.add_argument("--operator", help="who adds the user (default: the OS user)")
    add.add_argument("--json", action="store_true", help="print the user and token as JSON")
    add.set_defaults(func=_cmd_user_add)

    list_ = sub.add_parser("list", help="list the API's users (never their tokens)")
    list_.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    list_.add_argument("--json", action="store_true", help="print the users as JSON")
    list_.set_defaults(func=_cmd_user_list)

    remove = sub.add_parser(
        "remove", help="remove a user: its token is refused from now on (audited)"
    )
    remove.add_argument("node_dir", metavar="NODE_DIR", type=Path)
    remove.add_argument("--name", required=True, help="the user's name, as 'user list' shows it")
    remove.add_argument("--operator", help="who removes the user (default: the OS user)")
    remove.add_argument("--json", action="store_true", help="print the removed user as JSON")
    remove.set_defaults(func=_cmd_user_remove)


def _cmd_user_add(args: argparse.Namespace) -> int:
    from node.data import audit

    name = users.check_name(args.name)  # before anything is opened
    config = NodeConfig.load(args.node_dir)
    key = audit.load_signing_key(config.audit_key)
    operator = operator_name(args)
    token = users.new_token()
    with Store.open(config.store_path) as store, store.transaction() as conn:
        user = users.add_user(conn, name, args.role, users.hash_token(token), utc_now(), operator)
        audit.append(
            conn, key, "user.added", {"operator": operator, "user": name, "role": user.role}
        )
    if args.json:
        print_json({**user.to_json(), "token": token})
    else:
        print(f"user {name} ({user.role}) added. Its API token, shown this once:")
        print(token)
        print(
            "Keep it where its user keeps secrets; send it as 'Authorization: Bearer TOKEN'. "
            f"A lost token cannot be shown again: '{PROG} user remove', then 'user add'."
        )
    return 0


def _cmd_user_list(args: argparse.Namespace) -> int:
    config = NodeConfig.load(args.node_dir)
    with Store.open(config.store_path) as store:
        found = users.list_users(store.conn)
    if args.json:
        print_json([u.to_json() for u in found])
    elif not found:
        print(f"no users; add one with '{PROG} user add {args.node_dir} --name NAME --role ROLE'")
    else:
        rows = [[u.name, u.role, u.created_at, u.created_by] for u in found]
        print(format_table(["name", "role", "added (UTC)", "added by"], rows))
    return 0


def _cmd_user_remove(args: argparse.Namespace) -> int:
    from node.data import audit

    config = NodeConfig.load(args.node_dir)
    key = audit.load_signing_key(config.audit_key)
    operator = operator_name(args)
    with Store.open(config.store_path) as store, store.transaction() as conn:
        user = users.remove_user(conn, args.name)
        fields = {"operator": operator, "user": user.name, "role": user.role}
        audit.append(conn, key, "user.removed", fields)
    if args.json:
        print_json(user.to_json())
    else:
        print(f"user {user.name} ({user.role}) removed; its token is refused from now on")
    return 0
