"""A throw-away federation of real nodes for end-to-end tests: real CLI, real `serve` processes.

Every node is created with `blindmatch init`, configured with `peer add`
(and `configure` for node.toml keys the CLI does not set), loaded with
`ingest` and started with `blindmatch serve` on a free loopback port;
`close()` stops every process it started, and theirs, by pid.

Commands run as a user's shell runs them (`AS_A_USER`): umask 022, so the
node's own file modes are what a test sees, and Ctrl-C (SIGINT) with its
default meaning, even where the test runner was started with it ignored.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from tests.conftest import kill_processes, wait_until, with_descendants

__all__ = ["AS_A_USER", "Federation", "free_port", "peer_channel", "port_is_free"]

AS_A_USER = [
    sys.executable,
    "-c",
    "import os, signal, sys; os.umask(0o022); signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, '-m', 'node.cli', *sys.argv[1:]])",
]
"""`blindmatch` as `BLINDMATCH` runs it, exec'd (same pid) with a user's umask and Ctrl-C."""
START_SECONDS = 60.0
"""How long `serve` may take to say it listens."""


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


def port_is_free(address: str) -> bool:
    """Whether a new server could listen on HOST:PORT now (as servers do, with SO_REUSEADDR)."""
    host, _, port = address.rpartition(":")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(port)))
            sock.listen()
        except OSError:
            return False
    return True


class Federation:
    """A CA and nodes under `root`, with helpers that run the real CLI."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.addresses: dict[str, str] = {}
        self.servers: dict[str, subprocess.Popen[str]] = {}
        self.spawned: list[subprocess.Popen[str]] = []
        self.cli("ca", "init", root / "ca")

    def cli(self, *args: object, check: bool = True, timeout: float = 180) -> Any:
        """Runs `blindmatch ARGS`; returns the completed process (raises on failure if check)."""
        proc = subprocess.run(
            [*AS_A_USER, *map(str, args)], capture_output=True, text=True, timeout=timeout
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

    def configure(self, agency: str, peer: str | None = None, **values: object) -> None:
        """Sets keys of `agency`'s node.toml (of its `[peers.PEER]` table if `peer` is given)."""
        path = self.node(agency) / "node.toml"
        config = tomllib.loads(path.read_text())
        table = config["peers"][peer] if peer else config
        table.update(values)
        path.write_text(tomli_w.dumps(config))  # in place: the file keeps its mode

    def spawn(self, *args: object) -> subprocess.Popen[str]:
        """Starts `blindmatch ARGS` with its output piped; `close()` ends it if it still runs."""
        proc = subprocess.Popen(
            [*AS_A_USER, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.spawned.append(proc)
        return proc

    def start(self, agency: str, *serve_args: object) -> subprocess.Popen[str]:
        """Starts `blindmatch serve` for `agency` (with `serve_args`) and waits until it listens.

        Its output goes to ROOT/AGENCY.log, never to a pipe: a server (or one of
        its forked servers) that outlives the test's reading end must not fail on
        a closed pipe.
        """
        log_path = self.log(agency)
        offset = log_path.stat().st_size if log_path.exists() else 0
        args = [*map(str, serve_args)]
        servers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
        with open(log_path, "a") as log:
            proc = subprocess.Popen(
                [*AS_A_USER, "serve", self.node(agency), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )

        def started() -> bool:
            text = log_path.read_text(errors="replace")[offset:]
            return text.count("serving on") >= servers or proc.poll() is not None

        wait_until(started, START_SECONDS, interval=0.05)
        if log_path.read_text(errors="replace")[offset:].count("serving on") < servers:
            kill_processes(with_descendants(proc.pid))
            proc.wait()
            tail = log_path.read_text(errors="replace")[offset:][-2000:]
            raise AssertionError(f"{agency} did not start; {log_path}:\n{tail}")
        self.servers[agency] = proc
        return proc

    def log(self, agency: str) -> Path:
        """The file every `serve` of `agency` writes its output to."""
        return self.root / f"{agency}.log"

    def stop(self, agency: str, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Stops the server of `agency` by pid; returns its exit code.

        Past `timeout` the server and its processes are killed and the test fails.
        """
        proc = self.servers.pop(agency)
        processes = with_descendants(proc.pid)
        os.kill(proc.pid, sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_processes({**processes, **with_descendants(proc.pid)})
            proc.wait()
            raise AssertionError(f"{agency}'s serve ran on {timeout} s after {sig!r}") from None

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

    def hits(self, agency: str, *filters: str) -> list[dict[str, Any]]:
        """The hits `agency` has recorded: `hits --json` with `filters` (e.g. "--new")."""
        result: list[dict[str, Any]] = json.loads(
            self.cli("hits", self.node(agency), "--json", *filters).stdout
        )
        return result

    def close(self) -> None:
        """Kills every server and spawned command still running, with their processes."""
        for proc in [*self.servers.values(), *self.spawned]:
            if proc.poll() is None:  # not reaped yet: its pid is still its own
                kill_processes(with_descendants(proc.pid))
                proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                if pipe:
                    pipe.close()
        self.servers.clear()
        self.spawned.clear()
