"""What the command modules share: JSON output, the operator's name, audited config writes."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import re
from typing import TYPE_CHECKING, Any

from node.errors import ConfigError

if TYPE_CHECKING:
    from node.setup.config import NodeConfig

__all__ = [
    "PROG",
    "Subparsers",
    "csv_option",
    "json_error",
    "one_line",
    "operator_name",
    "parse_since",
    "print_json",
    "write_audited",
]

PROG = "blindmatch"
Subparsers = Any  # argparse's _SubParsersAction is private


def print_json(value: object) -> None:
    """Prints `value` as one line of JSON, non-ASCII kept as is."""
    print(json.dumps(value, ensure_ascii=False))


def csv_option(value: str | None) -> tuple[str, ...]:
    """The items of a comma-separated option, blanks dropped."""
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


def operator_name(args: argparse.Namespace) -> str:
    """The person the audit log names: --operator, else the OS user."""
    if args.operator:
        return str(args.operator)
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def one_line(exc: Exception) -> str:
    """An error's message on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def json_error(exc: Exception) -> dict[str, Any]:
    """`{"error": {"kind", "message"}}` (DESIGN §6); the kind is the error class, snake_case."""
    kind = re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()
    return {"error": {"kind": kind, "message": one_line(exc)}}


def write_audited(
    config: NodeConfig, updated: NodeConfig, event: str, fields: dict[str, Any]
) -> None:
    """Writes `updated` as node.toml with one audit entry, in one transaction."""
    from node.data import audit
    from node.data.store import Store
    from node.setup.config import write_config

    key = audit.load_signing_key(config.audit_key)
    with Store.open(config.store_path) as store, store.transaction() as conn:
        audit.append(conn, key, event, fields)
        write_config(updated)  # inside the transaction: a failed write leaves no audit entry


def parse_since(text: str | None) -> dt.datetime | None:
    """The UTC time of a `--since` option (naive times are UTC), or None."""
    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--since {text!r} is not an ISO date or time, e.g. 2026-11-01 or 2026-11-01T08:00Z"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
