"""Progress bars for long commands on the operator's terminal, and silence everywhere else.

Bars are tqdm's, on stderr, and only when stderr is a terminal and the output
is not `--json`: a pipe, a log file or a test sees nothing. A bar appears
only once its command has run for a second, so short commands stay one line.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["Bars", "wanted"]


def wanted(as_json: bool) -> bool:
    """Whether to draw bars: stderr is a terminal and the output is not JSON."""
    return not as_json and sys.stderr.isatty()


class Bars:
    """One bar per stage of a command ("sent", "received", "read"), created on first use."""

    def __init__(self, title: str, *, enabled: bool) -> None:
        self.title = title
        self.enabled = enabled
        self._bars: dict[str, tqdm] = {}

    def _bar(self, stage: str, total: int, unit: str) -> tqdm:
        bar = self._bars.get(stage)
        if bar is None:
            from tqdm import tqdm  # only where a bar is drawn: a terminal

            bar = self._bars[stage] = tqdm(
                total=total,
                desc=f"{self.title}: {stage}",
                unit=unit,
                unit_scale=unit != "%",
                file=sys.stderr,
                delay=1.0,
                mininterval=0.2,
                dynamic_ncols=True,
                leave=False,
            )
        return bar

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Shows `done` of `total` elements for `stage` (a `node.sessions.results.Progress`)."""
        if self.enabled:
            bar = self._bar(stage, total, " elements")
            bar.update(done - bar.n)

    def fraction(self, stage: str, done: float, note: str = "") -> None:
        """Shows a fraction `done` (0-1) of `stage`, with a note such as the rows read."""
        if self.enabled:
            bar = self._bar(stage, 100, "%")
            bar.update(int(done * 100) - bar.n)
            if note:
                bar.set_postfix_str(note, refresh=False)

    def __enter__(self) -> Bars:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
