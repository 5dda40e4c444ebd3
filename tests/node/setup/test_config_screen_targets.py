"""`[[screen.target]]` in node.toml: the partners' lists real-time screening asks by default,
parsed, checked with clear messages and written back."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.errors import ConfigError
from node.setup.config import NodeConfig, ScreenTarget, with_peer, without_peer, write_config

HEAD = 'agency = "customs-nl"\nlisten = "127.0.0.1:50051"\n'
POLICE = '[peers.police-nl]\naddress = "127.0.0.1:50052"\nmodes = ["screen"]\n'


def _load(tmp_path: Path, text: str) -> NodeConfig:
    (tmp_path / "node.toml").write_text(HEAD + text)
    return NodeConfig.load(tmp_path)


def test_targets_load_and_round_trip(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        '[[screen.target]]\npeer = "police-nl"\nlist = "watchlist"\n'
        '[[screen.target]]\npeer = "border-be"\nlist = "wanted-2026"\n' + POLICE,
    )
    assert config.screen_targets == (
        ScreenTarget("police-nl", "watchlist"),
        ScreenTarget("border-be", "wanted-2026"),  # not a peer yet: checked when screening
    )
    write_config(config)
    assert NodeConfig.load(tmp_path) == config
    assert "[screen]" in (tmp_path / "node.toml").read_text()


def test_no_target_is_the_default_and_writes_nothing(tmp_path: Path) -> None:
    config = _load(tmp_path, "")
    assert config.screen_targets == ()
    assert "screen" not in config.to_toml()


def test_peer_changes_keep_the_targets(tmp_path: Path) -> None:
    config = _load(tmp_path, '[[screen.target]]\npeer = "police-nl"\nlist = "wl"\n' + POLICE)
    changed = with_peer(config, "police-nl", {"release_labels": True}, new=False)
    assert changed.screen_targets == config.screen_targets
    assert without_peer(changed, "police-nl").screen_targets == config.screen_targets


@pytest.mark.parametrize(
    ("tables", "match"),
    [
        ('[[screen.target]]\nlist = "wl"\n', r"number 1: missing key 'peer'"),
        ('[[screen.target]]\npeer = "police-nl"\n', r"number 1: missing key 'list' \(the name"),
        ('[[screen.target]]\npeer = "Police"\nlist = "wl"\n', r"number 1: peer: agency id"),
        ('[[screen.target]]\npeer = "police-nl"\nlist = "a b"\n', r"list: 'a b' is not a list"),
        ('[[screen.target]]\npeer = "police-nl"\nlist = 3\n', r"key 'list' must be a str"),
        (
            '[[screen.target]]\npeer = "police-nl"\nlist = "wl"\ncolour = "red"\n',
            r"number 1: unknown key 'colour'",
        ),
        ("[screen]\ntargets = []\n", r"\[screen\]: unknown key 'targets'; known: target"),
        ('[screen]\ntarget = "police-nl"\n', r"key 'target' must be a list"),
        (
            '[[screen.target]]\npeer = "police-nl"\nlist = "wl"\n' * 2,
            r"peer police-nl list wl is configured twice",
        ),
    ],
)
def test_bad_targets_name_the_table_and_key(tmp_path: Path, tables: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        _load(tmp_path, tables)
    assert "node.toml" in str(info.value)
