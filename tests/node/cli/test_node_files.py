"""A node's files and its one `serve` (DESIGN §5, issue 10).

The node directory holds plaintext identifiers and labels, keys and
certificates: it is readable by the node's user only, however permissive the
umask of whoever runs the commands. A lock in it stops a second `serve` of the
same node with one line naming the pid that serves it; the first keeps serving.
"""

from __future__ import annotations

import stat
import subprocess
import time
from collections.abc import Iterator
from importlib import metadata

import pytest

from tests.federation import AS_A_USER, Federation

CUSTOMS = """ref,name,dob,passport,passport_country,iban,label
C1,"ALVAREZ NUNEZ, Jose",03.04.1980,,,,customs case C1
C2,,,,,NL91 ABNA 0417 1643 00,customs case C2
C3,Pieter de Vries,19900215,NX4R71K22,NLD,,customs case C3
"""
POLICE = """ref,name,dob,passport,passport_country,iban,label
P1,José Álvarez-Núñez,1980-04-03,,,,police op TULIP
P2,,,,,NL91ABNA0417164300,police op DELTA
"""
REFUSE_SECONDS = 10.0  # for a second serve to give up


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    fed = Federation(tmp_path_factory.mktemp("node-files"))  # commands run with umask 022
    try:
        fed.add_node("customs-nl")
        fed.add_node("police-nl")
        fed.add_peer("customs-nl", "police-nl")
        fed.add_peer("police-nl", "customs-nl")
        fed.ingest("customs-nl", "seizures", CUSTOMS)
        fed.ingest("police-nl", "targets", POLICE)
        fed.start("police-nl")
        yield fed
    finally:
        fed.close()


def test_node_directory_and_every_file_in_it_are_the_node_users_only(fed: Federation) -> None:
    assert fed.match("customs-nl", "police-nl", "seizures", "targets")["match_count"] == 3
    for agency in ("customs-nl", "police-nl"):
        node = fed.node(agency)
        names = {p.name for p in node.iterdir()}
        assert {"node.toml", "store.sqlite", "audit.key", "audit.pub", "tls"} <= names
        if agency == "police-nl":  # serving: its lock and the store's WAL files are there
            assert {"serve.lock", "store.sqlite-wal", "store.sqlite-shm"} <= names
        for path in [node, *node.rglob("*")]:
            mode = stat.S_IMODE(path.lstat().st_mode)
            expected = 0o700 if path.is_dir() else 0o600
            assert mode == expected, f"{path} has mode {mode:o}, not {expected:o}"


def test_version_is_printed() -> None:
    proc = subprocess.run([*AS_A_USER, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"blindmatch {metadata.version('blindmatch')}"


@pytest.mark.parametrize(
    "first,second",
    [((), ()), ((), ("--workers", "2")), (("--workers", "2"), ())],
    ids=["plain", "second-with-workers", "first-with-workers"],
)
def test_a_second_serve_of_the_same_node_is_refused(
    fed: Federation, first: tuple[str, ...], second: tuple[str, ...]
) -> None:
    if first:
        assert fed.stop("police-nl") == 0
        fed.start("police-nl", *first)
    try:
        serving = fed.servers["police-nl"]
        began = time.monotonic()
        proc = fed.cli("serve", fed.node("police-nl"), *second, check=False, timeout=60)
        took = time.monotonic() - began
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert took < REFUSE_SECONDS, f"the second serve took {took:.1f} s to give up"
        assert "Traceback" not in proc.stderr and proc.stdout == "", proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("blindmatch: error: "), proc.stderr
        assert f"pid {serving.pid}" in lines[0], lines[0]

        assert serving.poll() is None, "the first serve stopped"
        assert fed.match("customs-nl", "police-nl", "seizures", "targets")["match_count"] == 3
    finally:
        if first:
            assert fed.stop("police-nl") == 0
            fed.start("police-nl")
