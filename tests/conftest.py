"""Shared fixtures: a federation CA, node directories, and the real `blindmatch` entry point."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

import pytest

from node.data.store import Store
from node.setup import pki
from node.setup.config import NodeConfig, write_config

BLINDMATCH = [sys.executable, "-m", "node.cli"]
"""The CLI exactly as the console script runs it (`node.cli:main`), from this interpreter."""

RunCli = Callable[..., subprocess.CompletedProcess[str]]
MakeNode = Callable[..., NodeConfig]


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A federation CA directory shared by the whole test session."""
    ca_dir = tmp_path_factory.mktemp("ca")
    pki.init_ca(ca_dir, "test federation CA")
    return ca_dir


@pytest.fixture
def make_node(ca: Path, tmp_path: Path) -> MakeNode:
    """Creates node directories in-process (certificate, audit key, store, node.toml)."""

    def make(
        agency: str = "customs-nl", listen: str = "127.0.0.1:50051", **options: object
    ) -> NodeConfig:
        node_dir = tmp_path / agency
        node_dir.mkdir()
        pki.issue_node_certificate(ca, node_dir, agency, ("127.0.0.1",))
        pki.generate_audit_key(node_dir)
        Store.open(node_dir, create=True).close()
        config = NodeConfig(
            node_dir=node_dir,
            agency=agency,
            listen=listen,
            region=str(options.pop("region", "NL")),
            peers=MappingProxyType({}),
            **options,  # type: ignore[arg-type]
        )
        write_config(config)
        return config

    return make


@pytest.fixture
def node(make_node: MakeNode) -> NodeConfig:
    """One node, customs-nl, with phone region NL."""
    return make_node()


@pytest.fixture
def run_cli(tmp_path: Path) -> RunCli:
    """Runs `blindmatch ARGS...` as a subprocess in tmp_path; returns the completed process."""

    def run(
        *args: object, timeout: float = 120, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*BLINDMATCH, *map(str, args)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"blindmatch {' '.join(map(str, args))} exited {proc.returncode}: {proc.stderr}"
            )
        return proc

    return run
