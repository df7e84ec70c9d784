"""A dummy "server" for process-lifecycle tests (watchdog, stale servers, stop signals)
without SGLang: a python process that starts two ``sleep`` children, one in its own
session (escaped from the process group, as a careless server child might be), prints
its pid and theirs on one line, and sleeps. ``DummySpec`` has the ``ServerSpec`` shape
that `atts.serving.sglang.start_server` launches; it never binds its port."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

DUMMY = r"""
import os, subprocess, sys, time
kids = [subprocess.Popen(["sleep", "300"]),
        subprocess.Popen(["sleep", "301"], start_new_session=True)]
print(" ".join(str(p) for p in [os.getpid()] + [k.pid for k in kids]), flush=True)
time.sleep(300)
"""


@dataclass(frozen=True)
class DummySpec:
    role: str
    model_path: str = "dummy"
    host: str = "127.0.0.1"
    port: int | None = 1  # never bound

    def argv(self, port: int) -> list[str]:
        return [sys.executable, "-c", DUMMY]

    def env(self) -> dict[str, str]:
        return dict(os.environ)
