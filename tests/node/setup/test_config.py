"""Tests for node.config: loading, validation with file and key named, atomic writes."""

from pathlib import Path

import pytest

from node.errors import ConfigError
from node.setup.config import (
    NodeConfig,
    check_agency,
    with_option,
    with_peer,
    without_peer,
    write_config,
)


def test_round_trip_and_paths(node: NodeConfig) -> None:
    loaded = NodeConfig.load(node.node_dir)
    assert loaded == node
    assert loaded.store_path == node.node_dir / "store.sqlite"
    assert loaded.tls_key == node.node_dir / "tls" / "node.key"
    assert loaded.ca_cert == node.node_dir / "tls" / "ca.crt"
    assert loaded.audit_key == node.node_dir / "audit.key"
    assert loaded.canon_context().region == "NL"


def test_add_peer_defaults_and_policy(node: NodeConfig) -> None:
    config = with_peer(node, "police-nl", {"address": "127.0.0.1:50052"}, new=True)
    changes = {"address": "[::1]:50053", "lists": ("a",), "modes": frozenset({"screen"})}
    write_config(with_peer(config, "kmar-nl", changes, new=True))
    loaded = NodeConfig.load(node.node_dir)
    police, kmar = loaded.peer("police-nl"), loaded.peer("kmar-nl")
    assert police.allows_list("anything") and police.allows_mode("mutual")
    assert police.allows_mode("count") and not police.allows_mode("screen")
    assert not police.release_labels
    assert kmar.allows_list("a") and not kmar.allows_list("b") and kmar.allows_mode("screen")
    assert not list(node.node_dir.glob(".node.toml.*")), "temporary file left behind"
    with pytest.raises(ConfigError, match="not configured"):
        loaded.peer("nobody")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('listen = "127.0.0.1:1"\n', "missing key 'agency'"),
        ('agency = "a-b"\nlisten = "nohost"\n', "listen.*HOST:PORT"),
        ('agency = "a-b"\nlisten = "h:1"\ncolour = 1\n', "unknown key 'colour'"),
        ('agency = "a-b"\nlisten = "h:1"\nregion = 5\n', "'region' must be a str"),
        ('agency = "a-b"\nlisten = "h:1"\ndate_order = "YMD"\n', "date_order"),
        ('agency = "a-b"\nlisten = "h:1"\n[peers.p1]\nlists = []\n', r"\[peers.p1\].*'address'"),
        ('agency = "a-b"\nlisten = "h:1"\n[peers.p1]\naddress = "h:2"\nmodes = ["x"]\n', "mode"),
        ("agency = ", "not valid TOML"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "node.toml").write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        NodeConfig.load(tmp_path)
    assert "node.toml" in str(info.value)


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="blindmatch init"):
        NodeConfig.load(tmp_path)


@pytest.mark.parametrize("agency", ["", "a", "Customs", "-x", "a_b", "x" * 64])
def test_bad_agency(agency: str) -> None:
    with pytest.raises(ConfigError, match="agency id"):
        check_agency(agency)


def test_peer_changes_touch_only_what_is_given(node: NodeConfig) -> None:
    config = with_peer(node, "police-nl", {"address": "h:1", "release_labels": True}, new=True)
    changed = with_peer(config, "police-nl", {"sessions_per_hour": 1}, new=False)
    assert changed.peer("police-nl").release_labels and changed.peer("police-nl").address == "h:1"
    assert changed.peer("police-nl").sessions_per_hour == 1
    with pytest.raises(ConfigError, match="already configured"):
        with_peer(changed, "police-nl", {"address": "h:2"}, new=True)
    with pytest.raises(ConfigError, match="needs --address"):
        with_peer(changed, "kmar-nl", {}, new=True)
    with pytest.raises(ConfigError, match="not configured"):
        with_peer(changed, "kmar-nl", {"max_concurrent": 2}, new=False)
    assert "police-nl" not in without_peer(changed, "police-nl").peers
    with pytest.raises(ConfigError, match="own agency"):
        with_peer(changed, node.agency, {"address": "h:1"}, new=True)


def test_with_option_checks_like_load(node: NodeConfig) -> None:
    assert with_option(node, "date_order", "mdy").date_order == "MDY"
    assert with_option(node, "idle_seconds", " 45 ").idle_seconds == 45
    for key, value in (("date_order", "YMD"), ("idle_seconds", "0"), ("agency", "x")):
        with pytest.raises(ConfigError):
            with_option(node, key, value)
