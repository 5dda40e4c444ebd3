"""A mutual session's memory: at most 150 bytes an element on each side (issue 15).

Two real nodes, each with a list of 200,000 labelled records, half of them
shared (`bench.scale`: the lists are written into the stores directly, with
valid X25519 points, so the set-up does not hash 400,000 identifiers). The
responder is a real `blindmatch serve`, the initiator a real `blindmatch match
--json` over mTLS. Peak memory is the kernel's high-water mark (VmHWM) of each
process beyond its own baseline, measured exactly as `make bench`'s scale
section does: the initiator's against the same command on a one-element list,
the responder's after the session against after a one-element session.
"""

from __future__ import annotations

from pathlib import Path

from bench.scale import ScaleRun, scale_federation, scale_session

N = 200_000
BUDGET_BYTES = 150  # per element, beyond the process's baseline


def _described(run: ScaleRun) -> str:
    return (
        f"initiator {run.initiator_per_element:.0f} B an element "
        f"({run.initiator_baseline_kib} -> {run.initiator_kib} KiB), responder "
        f"{run.responder_per_element:.0f} B ({run.responder_baseline_kib} -> "
        f"{run.responder_kib} KiB), {run.seconds:.1f} s"
    )


def test_a_200k_session_stays_within_150_bytes_an_element_on_each_side(tmp_path: Path) -> None:
    initiator, responder = scale_federation(tmp_path, N)
    run = scale_session(tmp_path, initiator, responder, N)
    assert run.matches == N - N // 2
    assert run.initiator_per_element <= BUDGET_BYTES, _described(run)
    assert run.responder_per_element <= BUDGET_BYTES, _described(run)
    assert run.initiator_kib > run.initiator_baseline_kib  # the peaks were seen at all
