"""Shared fixtures: a federation CA, node directories, the real `blindmatch` entry point,
and the processes a test starts (found in /proc, waited for with deadlines).

`no_process_left_behind` (session, autouse) marks every process the test run
starts, through an environment variable they all inherit, and fails the run if
any of them is still running at its end: a `serve`, a pool worker or a
forkserver that outlived its test. Processes of other test runs on the same
machine do not carry this run's mark. The run's processes also share a
bytecode cache (`bytecode_cache`) and a temp directory (`temp_files_of_the_run`),
both removed at its end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
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

RUN_MARK = "BLINDMATCH_TEST_RUN"
"""Environment variable every process of this test run inherits (value: the run's token)."""
LEFTOVER_DEADLINE = 10.0
"""Seconds the run's processes get to exit at its end before they count as left behind."""
# Started by multiprocessing in the pytest process itself (an in-process pool):
# they end with pytest, which holds their pipes.
_PYTEST_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


# -- processes ----------------------------------------------------------------------------------


def process_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of `pid` from /proc, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text.rsplit(")", 1)[1].split()  # after the command, which may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def _all_processes() -> dict[int, tuple[str, int, int]]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := process_stat(int(entry))) is not None:
            found[int(entry)] = stat
    return found


def descendants(root: int) -> dict[int, int]:
    """Pid -> start time of every live process below `root` (children, theirs, ...)."""
    table = _all_processes()
    found: dict[int, int] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (state, ppid, start) in table.items():
            if ppid == parent and pid not in found and state != "Z":
                found[pid] = start
                frontier.append(pid)
    return found


def with_descendants(pid: int) -> dict[int, int]:
    """`pid` and every process below it, pid -> start time (empty once `pid` is gone)."""
    stat = process_stat(pid)
    if stat is None or stat[0] == "Z":
        return {}
    return {pid: stat[2], **descendants(pid)}


def still_running(processes: Mapping[int, int]) -> list[int]:
    """Those of `processes` (pid -> start time, so a reused pid is not mistaken) still running.

    An exited process not yet reaped (a zombie) has stopped: it holds nothing.
    """
    running = []
    for pid, start in processes.items():
        stat = process_stat(pid)
        if stat is not None and stat[2] == start and stat[0] != "Z":
            running.append(pid)
    return running


def wait_until(condition: Callable[[], object], seconds: float, interval: float = 0.02) -> bool:
    """Polls `condition` until it is true (returns True) or `seconds` pass (returns False)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def kill_processes(processes: Mapping[int, int]) -> None:
    """SIGKILLs each of `processes` still running, by pid (start time checked first)."""
    for pid in still_running(processes):
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def command_line(pid: int) -> str:
    """The command line of `pid`, for messages ('?' once it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    text = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return " ".join(text.split())  # one line, even for `python -c` with a script


def _marked(token: str) -> Iterable[int]:
    """Pids whose environment carries this run's mark."""
    needle = f"{RUN_MARK}={token}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if needle in environ.split(b"\0"):
            yield int(entry)


def _left_behind(token: str) -> dict[int, int]:
    """This run's processes still running, but for pytest itself and its multiprocessing helpers."""
    me = os.getpid()
    table = _all_processes()
    pids = set(_marked(token)) | set(descendants(me))
    left = {}
    for pid in pids - {me}:
        stat = table.get(pid)
        if stat is None or stat[0] == "Z":
            continue
        if stat[1] == me and any(h in command_line(pid) for h in _PYTEST_HELPERS):
            continue
        left[pid] = stat[2]
    return left


@pytest.fixture(scope="session", autouse=True)
def bytecode_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Lets the processes of the run share compiled modules, kept in a directory of its own.

    Where the environment turns bytecode caching off (PYTHONDONTWRITEBYTECODE, so
    that no `__pycache__` lands in the source tree), every `blindmatch` the tests
    start would compile the project's modules again: tens of milliseconds a call,
    thousands of calls. The run's processes cache them under its temp directory
    instead (PYTHONPYCACHEPREFIX), removed at its end; the source tree stays clean.
    """
    if not os.environ.get("PYTHONDONTWRITEBYTECODE") or "PYTHONPYCACHEPREFIX" in os.environ:
        yield
        return
    cache = tmp_path_factory.mktemp("pycache")
    os.environ["PYTHONPYCACHEPREFIX"] = str(cache)
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    yield
    shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def temp_files_of_the_run() -> Iterator[None]:
    """Gives the run's processes a temp directory of their own (TMPDIR), removed at its end:
    what a process a test kills leaves there goes with the run, not into /tmp."""
    temp = tempfile.mkdtemp(prefix="blindmatch-tests-")  # short: AF_UNIX paths go in it
    os.environ["TMPDIR"] = temp
    yield
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind(bytecode_cache: None, temp_files_of_the_run: None) -> Iterator[None]:
    """Fails the test run if a process it started is still running at its end (STYLE 14)."""
    token = secrets.token_hex(8)
    os.environ[RUN_MARK] = token
    yield
    left: dict[int, int] = {}

    def none_left() -> bool:
        left.clear()
        left.update(_left_behind(token))
        return not left

    if wait_until(none_left, LEFTOVER_DEADLINE, interval=0.1):
        return
    lines = [f"  pid {pid}: {command_line(pid)}" for pid in sorted(left)]
    kill_processes(left)  # leave nothing behind, then say what was
    pytest.fail(
        f"{len(left)} process(es) started by the tests still ran {LEFTOVER_DEADLINE:.0f} s "
        "after the last test (killed now):\n" + "\n".join(lines),
        pytrace=False,
    )


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
