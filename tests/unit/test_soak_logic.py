"""The soak's bookkeeping without servers: the loop-lag probe sees a blocked loop, and
check_records counts a key recorded twice as duplicated."""

import asyncio
import json
import time

from atts.commands.soak import LoopLag, check_records


def test_loop_lag_sees_a_blocked_loop():
    async def go():
        lag = LoopLag(period=0.02).start()
        await asyncio.sleep(0.1)
        time.sleep(0.3)  # a blocking call on the loop: every sample stalls this long
        await asyncio.sleep(0.1)
        return await lag.stop()

    rep = asyncio.run(go())
    assert rep["loop_lag_max_ms"] >= 250  # the 300 ms block, less the probe period
    assert rep["loop_lag_p50_ms"] < rep["loop_lag_max_ms"]  # one stall, not every wake-up


def test_duplicated_keys_are_counted(tmp_path):
    d = tmp_path / "round-000" / "samples"
    d.mkdir(parents=True)
    rec = {"key": "q00000-r000", "status": "done", "steps": []}
    (d / "q00000-r000.json").write_text(json.dumps(rec))
    assert check_records([tmp_path / "round-000"])["samples_duplicated"] == 0
    (d / "q00000-r001.json").write_text(json.dumps(rec))  # the same sample recorded under another name
    out = check_records([tmp_path / "round-000"])
    assert out["samples_duplicated"] == 1 and out["n_integrity_problems"] == 1
