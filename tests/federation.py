"""A throw-away federation of real nodes for end-to-end tests: real CLI, real `serve` processes.

Every node is created with `blindmatch init`, configured with `peer add`,
loaded with `ingest` and started with `blindmatch serve` on a free loopback
port; `close()` stops every process it started, by pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import BLINDMATCH

__all__ = ["Federation", "free_port", "peer_channel"]


def peer_channel(node_dir: Path, peer: str, address: str) -> Any:
    """A synchronous mTLS channel with `node_dir`'s certificate, for hand-made messages."""
    import grpc

    tls = node_dir / "tls"
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(tls / "ca.crt").read_bytes(),
        private_key=(tls / "node.key").read_bytes(),
        certificate_chain=(tls / "node.crt").read_bytes(),
    )
    options = [("grpc.ssl_target_name_override", peer)]
    return grpc.secure_channel(address, credentials, options=options)


def free_port() -> int:
    """Returns a TCP port that is free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Federation:
    """A CA and nodes under `root`, with helpers that run the real CLI."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.addresses: dict[str, str] = {}
        self.servers: dict[str, subprocess.Popen[str]] = {}
        self.cli("ca", "init", root / "ca")

    def cli(self, *args: object, check: bool = True, timeout: float = 180) -> Any:
        """Runs `blindmatch ARGS`; returns the completed process (raises on failure if check)."""
        proc = subprocess.run(
            [*BLINDMATCH, *map(str, args)], capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"blindmatch {' '.join(map(str, args))}: {proc.stderr}")
        return proc

    def node(self, agency: str) -> Path:
        """The node directory of `agency`."""
        return self.root / agency

    def add_node(self, agency: str, region: str = "NL", ca: Path | None = None) -> Path:
        """Creates a node with `blindmatch init` on a free port."""
        self.addresses[agency] = f"127.0.0.1:{free_port()}"
        self.cli(
            "init",
            self.node(agency),
            "--agency",
            agency,
            "--listen",
            self.addresses[agency],
            "--ca",
            ca or self.root / "ca",
            "--region",
            region,
        )
        return self.node(agency)

    def add_peer(self, agency: str, peer: str, *options: str) -> None:
        """Lets `peer` talk to `agency` (and `agency` reach `peer`)."""
        self.cli(
            "peer",
            "add",
            self.node(agency),
            "--agency",
            peer,
            "--address",
            self.addresses[peer],
            *options,
        )

    def ingest(self, agency: str, list_name: str, csv_text: str, *options: str) -> Any:
        """Ingests CSV text into a list; returns the `ingest --json` result."""
        path = self.root / f"{agency}-{list_name}.csv"
        path.write_text(csv_text)
        proc = self.cli("ingest", self.node(agency), "--list", list_name, path, "--json", *options)
        return json.loads(proc.stdout)

    def start(self, agency: str) -> subprocess.Popen[str]:
        """Starts `blindmatch serve` for `agency` and waits until it listens."""
        log = open(self.root / f"{agency}.log", "a")  # noqa: SIM115 (lives with the process)
        proc = subprocess.Popen(
            [*BLINDMATCH, "serve", self.node(agency)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "serving on" not in line:
            proc.kill()
            raise AssertionError(f"{agency} did not start: {line!r}; see {log.name}")
        self.servers[agency] = proc
        return proc

    def stop(self, agency: str, sig: int = signal.SIGTERM) -> int:
        """Stops the server of `agency` by pid; returns its exit code."""
        proc = self.servers.pop(agency)
        os.kill(proc.pid, sig)
        try:
            return proc.wait(timeout=60)
        finally:
            if proc.stdout:
                proc.stdout.close()

    def match(
        self,
        agency: str,
        peer: str,
        list_name: str,
        peer_list: str | None = None,
        mode: str = "mutual",
        purpose: str = "end-to-end test",
        check: bool = True,
    ) -> Any:
        """Runs `blindmatch match --json`: the parsed result, or the process if it failed."""
        proc = self.cli(
            "match",
            self.node(agency),
            "--peer",
            peer,
            "--list",
            list_name,
            "--peer-list",
            peer_list or list_name,
            "--mode",
            mode,
            "--purpose",
            purpose,
            "--json",
            check=check,
        )
        return json.loads(proc.stdout) if proc.returncode == 0 else proc

    def hits(self, agency: str) -> list[dict[str, Any]]:
        """Every hit `agency` has recorded."""
        result: list[dict[str, Any]] = json.loads(
            self.cli("hits", self.node(agency), "--json").stdout
        )
        return result

    def close(self) -> None:
        """Stops every server still running."""
        for agency in list(self.servers):
            self.stop(agency, signal.SIGKILL)
