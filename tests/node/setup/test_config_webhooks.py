"""`[[notify.webhook]]` in node.toml: parsed, checked with clear messages, written back, and
never shown with its secret (`config show`, reprs)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from node.errors import ConfigError
from node.setup.config import NodeConfig, Webhook, with_option, write_config
from tests.conftest import RunCli

SECRET = "s3cr3t-do-not-print"
HEAD = 'agency = "customs-nl"\nlisten = "127.0.0.1:50051"\n'


def _load(tmp_path: Path, text: str) -> NodeConfig:
    (tmp_path / "node.toml").write_text(HEAD + text)
    return NodeConfig.load(tmp_path)


def test_webhooks_load_and_round_trip(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        "notify_retry_seconds = 5\n"
        f'[[notify.webhook]]\nurl = "https://cases.example/hook"\nsecret = "{SECRET}"\n'
        '[[notify.webhook]]\nurl = "http://127.0.0.1:8080/x?y=1"\nsecret = "two"\n',
    )
    assert config.webhooks == (
        Webhook("https://cases.example/hook", SECRET),
        Webhook("http://127.0.0.1:8080/x?y=1", "two"),
    )
    assert config.notify_retry_seconds == 5
    write_config(config)
    assert NodeConfig.load(tmp_path) == config
    assert SECRET not in repr(config)  # reprs reach logs and tracebacks
    shown = json.dumps(config.to_display())
    assert SECRET not in shown and "https://cases.example/hook" in shown


def test_no_webhook_is_the_default(tmp_path: Path) -> None:
    config = _load(tmp_path, "")
    assert config.webhooks == () and config.notify_retry_seconds == 2
    assert "notify" not in config.to_toml()


@pytest.mark.parametrize(
    ("table", "match"),
    [
        (
            'url = "ftp://cases.example/hook"\nsecret = "x"',
            r"number 1: url 'ftp://.*' is not an http",
        ),
        ('url = "cases.example/hook"\nsecret = "x"', r"is not an http:// or https:// URL"),
        ('url = "https://"\nsecret = "x"', r"is not an http:// or https:// URL"),
        ('url = "https://h:port/"\nsecret = "x"', r"is not an http:// or https:// URL"),
        ('url = "https://u:pw@cases.example/"\nsecret = "x"', r"user name or password"),
        ('url = "https://cases.example/"', r"number 1: missing key 'secret'.*openssl rand"),
        ('url = "https://cases.example/"\nsecret = "  "', r"secret must be a non-empty string"),
        ('secret = "x"', r"missing key 'url'"),
        ('url = 7\nsecret = "x"', r"key 'url' must be a str"),
        ('url = "https://cases.example/"\nsecret = "x"\ntoken = "y"', r"unknown key 'token'"),
    ],
)
def test_bad_webhook_names_file_table_and_fix(tmp_path: Path, table: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        _load(tmp_path, f"[[notify.webhook]]\n{table}\n")
    assert str(tmp_path / "node.toml") in str(info.value)
    assert "[[notify.webhook]]" in str(info.value)


def test_duplicate_url_and_bad_retry(tmp_path: Path) -> None:
    hook = '[[notify.webhook]]\nurl = "https://cases.example/"\nsecret = "x"\n'
    with pytest.raises(ConfigError, match="configured twice"):
        _load(tmp_path, hook + hook)
    with pytest.raises(ConfigError, match="notify_retry_seconds must be .* from 1 to 600"):
        _load(tmp_path, "notify_retry_seconds = 0\n")
    with pytest.raises(ConfigError, match=r"\[notify\]: unknown key 'email'"):
        _load(tmp_path, "[notify]\nemail = []\n")


def test_retry_is_settable(tmp_path: Path) -> None:
    config = _load(tmp_path, "")
    assert with_option(config, "notify_retry_seconds", "1").notify_retry_seconds == 1
    with pytest.raises(ConfigError, match="notify_retry_seconds"):
        with_option(config, "notify_retry_seconds", "601")


def test_config_show_masks_the_secret(node: NodeConfig, run_cli: RunCli) -> None:
    hook = Webhook("https://cases.example/hook", SECRET)
    write_config(dataclasses.replace(node, webhooks=(hook,)))
    for args in ([], ["--json"]):
        proc = run_cli("config", "show", node.node_dir, *args, check=True)
        assert SECRET not in proc.stdout + proc.stderr
        assert "https://cases.example/hook" in proc.stdout and "****" in proc.stdout
