"""`executor` and `[executor_tls]` in node.toml, `--executor`: parsed, checked with messages
that name the key or option and the accepted forms, written back, set with `config set`."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.errors import ConfigError
from node.setup.config import ExecutorTLS, NodeConfig, check_executor, with_option, write_config
from node.setup.executor import executor_choice
from tests.conftest import RunCli

HEAD = 'agency = "customs-nl"\nlisten = "127.0.0.1:50051"\n'
TLS = '[executor_tls]\nca = "tls/dask/ca.crt"\ncert = "tls/dask/node.crt"\nkey = "/etc/k.pem"\n'


def _load(tmp_path: Path, text: str) -> NodeConfig:
    (tmp_path / "node.toml").write_text(HEAD + text)
    return NodeConfig.load(tmp_path)


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("local", None),
        ("dask://10.0.0.5:8786", "tcp://10.0.0.5:8786"),
        ("dask://scheduler.internal:8786", "tcp://scheduler.internal:8786"),
        ("dask://[fd00::5]:8786", "tcp://[fd00::5]:8786"),
        ("dask+tls://10.0.0.5:8786", "tls://10.0.0.5:8786"),
    ],
)
def test_executor_forms(value: str, address: str | None) -> None:
    assert check_executor(value) == address


@pytest.mark.parametrize(
    "value",
    ["", "Local", "dask", "dask://", "dask://host", "dask://:8786", "dask://h:0", "dask://h:70000",
     "tcp://h:8786", "tls://h:8786", "http://h:8786", "dask://h:8786/x", "dask://u@h:8786"],
)  # fmt: skip
def test_a_bad_executor_names_the_key_and_the_forms(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f'executor = "{value}"\n')
    message = str(caught.value)
    assert "node.toml: executor" in message and repr(value) in message
    assert "local, dask://HOST:PORT or dask+tls://HOST:PORT" in message
    with pytest.raises(ConfigError, match=r"^--executor: .* use local, dask://HOST:PORT"):
        executor_choice(_load(tmp_path, ""), value)


def test_local_is_the_default_and_the_table_round_trips(tmp_path: Path) -> None:
    config = _load(tmp_path, "")
    assert config.executor == "local" and config.executor_tls is None
    assert "executor_tls" not in config.to_toml()
    config = _load(tmp_path, 'executor = "dask+tls://10.0.0.5:8786"\n' + TLS)
    assert config.executor_tls == ExecutorTLS("tls/dask/ca.crt", "tls/dask/node.crt", "/etc/k.pem")
    assert config.executor_tls.paths(tmp_path)[0] == tmp_path / "tls/dask/ca.crt"
    assert config.executor_tls.paths(tmp_path)[2] == Path("/etc/k.pem")
    write_config(config)
    assert NodeConfig.load(tmp_path) == config


def test_tls_needs_its_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"executor dask\+tls://h:1 needs an \[executor_tls\]"):
        _load(tmp_path, 'executor = "dask+tls://h:1"\n')
    with pytest.raises(ConfigError, match=r"missing key 'key'"):
        _load(tmp_path, '[executor_tls]\nca = "a"\ncert = "b"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'password'"):
        _load(tmp_path, TLS + 'password = "x"\n')
    with pytest.raises(ConfigError, match=r"--executor dask\+tls://h:1 needs an \[executor_tls\]"):
        executor_choice(_load(tmp_path, ""), "dask+tls://h:1")


def test_the_option_overrides_node_toml(tmp_path: Path) -> None:
    config = _load(tmp_path, 'executor = "dask://10.0.0.5:8786"\n')
    assert executor_choice(config, None) == "dask://10.0.0.5:8786"
    assert executor_choice(config, "local") == "local"
    assert executor_choice(config, "dask://127.0.0.1:1") == "dask://127.0.0.1:1"


def test_config_set_executor(node: NodeConfig, run_cli: RunCli) -> None:
    done = run_cli("config", "set", node.node_dir, "executor", "dask://10.0.0.5:8786", check=True)
    assert "'local' -> 'dask://10.0.0.5:8786'" in done.stdout
    assert "after a restart" in done.stdout
    assert NodeConfig.load(node.node_dir).executor == "dask://10.0.0.5:8786"
    bad = run_cli("config", "set", node.node_dir, "executor", "dask://nowhere")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        f"blindmatch: error: {node.config_path}: executor: 'dask://nowhere' is not an executor; "
        "use local, dask://HOST:PORT or dask+tls://HOST:PORT (a Dask scheduler, e.g. "
        "dask://10.0.0.5:8786; see docs/DASK.md)"
    ]
    assert with_option(node, "executor", " local ").executor == "local"
