"""Atomic records: a process SIGKILLed while writing sample records (no servers needed:
the writes are the store's own) leaves only complete, valid JSON records; the temporary
file it may leave is never read as a record and is removed when the run is reopened."""

import json
import signal
import subprocess
import sys
import time

from atts.runtime.store import RunStore
from conftest import ROOT

WRITER = """
import sys
from atts.runtime.store import RunStore
store = RunStore(sys.argv[1])
store.samples_dir.mkdir(parents=True, exist_ok=True)
big = "x" * 400_000  # large records: a kill lands mid-write
i = 0
while True:
    store.write_sample({"key": f"q{i % 50:05d}-r000", "i": i, "text": big, "status": "done"})
    i += 1
"""


def test_sigkill_mid_write_leaves_no_half_record(tmp_path):
    out = tmp_path / "run"
    for attempt in range(5):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], cwd=ROOT)
        time.sleep(1.0 + 0.13 * attempt)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store = RunStore(out)
        recs = store.completed()
        assert recs, "the writer wrote nothing"
        for p in (out / "samples").glob("q*.json"):
            rec = json.loads(p.read_text())  # never half a record
            assert rec["key"] == p.stem and len(rec["text"]) == 400_000
        store.open("h", {})
        assert not list((out / "samples").glob(".*.tmp"))
