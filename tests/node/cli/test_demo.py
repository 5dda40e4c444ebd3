"""`blindmatch demo` (issue 13): the real command, four real nodes, its own webhook receiver.

The demo runs as a user runs it. Its output names the four agencies; in part 2
each conflict of the operations lists (the shared person, the shared phone, the
events 400 m apart) is notified to both agencies with a checked signature, the
events 6 km away and a week later are reported to no one, and every audit log is
intact. It leaves no process and no temporary directory behind, also when it is
interrupted with Ctrl-C while the nodes sweep (exit 130). The example node.toml
files it starts from are valid, and every pair of agencies may sweep `ops`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import queue
import re
import secrets
import signal
import subprocess
import threading
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from node.cli.demo import AGENCIES, CONFIG_DIR, OPS, sweep_peers
from node.cli.demo_receiver import Receiver, verified
from node.setup.config import NodeConfig
from tests.conftest import command_line, wait_until
from tests.federation import AS_A_USER

DEMO_SECONDS = 120.0
MARK = "BLINDMATCH_DEMO_TEST"
# (agency, its ref, the matched types, the partner) as each side's notification says it.
NOTIFIED = [
    ("customs-nl", "CN-OPS-1", "person, person_year", "police-nl"),
    ("police-nl", "PN-OPS-1", "person, person_year", "customs-nl"),
    ("police-nl", "PN-OPS-2", "phone", "border-guard-be"),
    ("border-guard-be", "BG-OPS-1", "phone", "police-nl"),
    ("police-nl", "PN-OPS-3", "event", "customs-de"),
    ("customs-de", "DE-OPS-1", "event", "police-nl"),
]


def _marked(token: str) -> list[str]:
    """Command lines of the running processes whose environment carries MARK=token."""
    needle = f"{MARK}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ.split(b"\0") and state != "Z":
            found.append(f"{entry}: {command_line(int(entry))}")
    return found


def _demo(token: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*AS_A_USER, "demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Without PYTHONUNBUFFERED: the demo shows its progress in a pipe by itself.
        env={**{k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}, MARK: token},
    )


def _read(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def _root(output: str) -> Path:
    found = re.search(r"four agency nodes in (\S+) \.\.\.", output)
    assert found, output[:500]
    return Path(found[1])


def _nothing_left(token: str, root: Path) -> None:
    left: list[str] = []

    def none() -> bool:
        left[:] = _marked(token)
        return not left

    assert wait_until(none, 10, interval=0.1), f"left running: {left}"
    assert not root.exists(), f"{root} not removed"


def test_demo_deconflicts_four_agencies_and_cleans_up() -> None:
    token = secrets.token_hex(8)
    with _demo(token) as demo:
        out, err = demo.communicate(timeout=DEMO_SECONDS)
    assert demo.returncode == 0, f"{err}\n{out[-3000:]}"
    for agency in AGENCIES:
        assert f"started {agency} (pid " in out
        assert re.search(rf"^   {agency}: audit log intact: ", out, re.MULTILINE), agency
    # Part 1 as before: mutual, screening and count sessions, and a refusal by policy.
    assert "== customs-nl asks police-nl (screen)" in out and "(count mode:" in out
    assert "refused: blindmatch: error: peer police-nl refused: PERMISSION_DENIED" in out
    # Part 2: every node swept its own list with its three partners; the demo ran no sweep.
    assert out.count(f"its node swept {OPS} on its own within") == 4
    for agency, ref, types, peer in NOTIFIED:
        block = rf"^-> {agency} \(hits? [\d, ]+; signature checked\): {OPS} {ref} shares {types} "
        assert re.search(rf"{block}with {peer}$", out, re.MULTILINE), (agency, ref, out[-4000:])
    assert len(re.findall(r"^-> \S+ \(hits? ", out, re.MULTILINE)) == len(NOTIFIED)
    for ref in ("CN-OPS-2", "DE-OPS-2"):
        assert f"{ref} shares" not in out
    assert re.search(r"^   not reported: customs-nl CN-OPS-2, an event 6\.0 km from", out, re.M)
    assert re.search(r"^   not reported: customs-de DE-OPS-2, .* 7 days later", out, re.M)
    assert f"nothing else in '{OPS}' was reported, to anyone" in out
    assert re.search(r"notifications of the new hits of part 1 .*every signature checked", out)
    assert "NOT" not in out.split("#### Checked", 1)[1]
    assert "webhook receiver stopped" in out
    _nothing_left(token, _root(out))


def test_demo_interrupted_while_sweeping_exits_130_and_cleans_up() -> None:
    token = secrets.token_hex(8)
    with _demo(token) as demo:
        assert demo.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=_read, args=(demo.stdout, lines))
        reader.start()
        seen: list[str] = []
        deadline = time.monotonic() + DEMO_SECONDS
        while not (seen and seen[-1].startswith("== police-nl loads")):  # customs-nl has swept
            assert demo.poll() is None, "".join(seen)[-3000:]
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
            assert time.monotonic() < deadline, "".join(seen)[-3000:]
        demo.send_signal(signal.SIGINT)  # Ctrl-C, to the demo alone
        assert demo.wait(timeout=60) == 130
        reader.join(timeout=10)
        assert demo.stderr is not None
        err = demo.stderr.read()
    assert "demo interrupted" in err, err
    _nothing_left(token, _root("".join(seen)))


def test_example_configs_are_valid_and_let_every_pair_sweep_ops(tmp_path: Path) -> None:
    examples = {a: tomllib.loads((CONFIG_DIR / a / "node.toml").read_text()) for a in AGENCIES}
    for agency, example in examples.items():
        config = NodeConfig.from_toml(tmp_path, example)
        assert config.agency == agency and len(config.webhooks) == 1
        assert config.sweep_poll_seconds == 1
        assert set(sweep_peers(example)) == set(AGENCIES) - {agency}


def test_receiver_checks_the_signature_before_reading_the_body() -> None:
    with Receiver(["customs-de"]) as receiver:
        body = b'{"hit_id": 3, "list": "ops"}'
        secret = receiver.secret("customs-de")
        good = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert verified(secret, body, good) and not verified(secret, body + b" ", good)

        def post(path: str, signature: str, payload: bytes = body) -> int:
            request = urllib.request.Request(
                receiver.url("customs-de").replace("/customs-de", path),
                data=payload,
                headers={"X-Blindmatch-Signature": signature, "X-Blindmatch-Delivery": "3"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as refused:
                return refused.code

        assert post("/customs-de", good) == 204
        assert post("/customs-de", good) == 204  # a repeat: answered, kept once
        assert post("/customs-de", "sha256=" + "0" * 64) == 401
        assert post("/customs-de", good, b"not json") == 401  # signed for another body
        assert post("/police-nl", good) == 404
    (delivery,) = receiver.deliveries()
    assert delivery.agency == "customs-de" and delivery.delivery == "3"
    assert delivery.body == {"hit_id": 3, "list": "ops"} and delivery.signature_ok
    assert len(receiver.rejected()) == 2
