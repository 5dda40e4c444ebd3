"""Progress bars: drawn on a terminal for a long command, never into a pipe or under --json."""

import fcntl
import os
import struct
import subprocess
import termios
from pathlib import Path

from node.data.sample import write_csv
from tests.conftest import BLINDMATCH, RunCli
from tests.node.cli.test_cli import setup_node

ROWS = 30_000  # an ingest of some seconds: bars appear after one


def _ingest_on_a_terminal(cwd: Path, *args: str) -> tuple[int, str]:
    """Runs `blindmatch ingest` with stderr on a pseudo-terminal; returns (exit code, stderr)."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    try:
        proc = subprocess.Popen(
            [*BLINDMATCH, "ingest", "node", *args],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=follower,
        )
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the command closed its side
                break
            if not data:
                break
            chunks.append(data)
        return proc.wait(timeout=300), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)


def test_ingest_draws_a_bar_only_on_a_terminal(run_cli: RunCli, tmp_path: Path) -> None:
    setup_node(run_cli, tmp_path)
    write_csv(tmp_path / "big.csv", ROWS, seed=3)
    code, drawn = _ingest_on_a_terminal(tmp_path, "--list", "a", "big.csv")
    assert code == 0, drawn
    assert "a: read:" in drawn and "rows" in drawn and "%|" in drawn, drawn

    code, drawn = _ingest_on_a_terminal(tmp_path, "--list", "b", "big.csv", "--json")
    assert code == 0 and drawn == "", drawn
    piped = run_cli("ingest", "node", "--list", "c", "big.csv", check=True)
    assert piped.stderr == ""
