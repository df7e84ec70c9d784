"""The progress display: a tqdm bar of samples done, running accuracy and takeover rate.

The runner knows nothing of it: `run_all` takes a ``progress`` factory (``total`` →
an object with ``update(record)`` and ``close()``) and calls it back per finished
sample; `bar` is the factory the commands pass."""

from __future__ import annotations

import sys
from typing import Callable, Protocol

from atts.records import first_attempt_decision


def stderr_bar(total: int, desc: str, unit: str, enabled: bool = True):
    """The one way atts draws a bar: tqdm on stderr (a widget in notebooks), redrawn at
    most twice a second; a disabled one draws nothing."""
    from tqdm.auto import tqdm  # deferred: tqdm's import is only paid by a command that shows a bar

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5)


class ProgressSink(Protocol):
    def update(self, rec: dict) -> None: ...

    def close(self) -> None: ...


class Progress:
    """tqdm bar: samples done, running accuracy, takeover rate."""

    def __init__(self, total: int, desc: str, enabled: bool = True):
        self.bar = stderr_bar(total, desc, "sample", enabled)
        self.n = self.correct = self.failed = self.decisions = self.takeovers = 0

    def update(self, rec: dict) -> None:
        self.n += 1
        self.correct += bool(rec.get("correct"))
        self.failed += rec["status"] == "failed"
        for s in rec["steps"]:
            if first_attempt_decision(s):
                self.decisions += 1
                self.takeovers += s["decision"] == "takeover"
        post = {"acc": f"{self.correct / self.n:.3f}"}
        if self.decisions:
            post["takeover"] = f"{self.takeovers / self.decisions:.3f}"
        if self.failed:
            post["failed"] = self.failed
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


class Silent:
    """No display."""

    def update(self, rec: dict) -> None:
        pass

    def close(self) -> None:
        pass


def bar(desc: str, enabled: bool = True) -> Callable[[int], ProgressSink]:
    """The factory `run_all` calls with the number of samples it will run."""
    return lambda total: Progress(total, desc, enabled) if enabled else Silent()
