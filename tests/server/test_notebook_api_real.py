"""``atts.run`` / ``atts.arun`` / ``atts.load_run`` against the real SGLang testbed, called
from inside a running event loop as a Jupyter cell would (issue 14). Marked `server` by
its folder; the fake-engine version is tests/unit/test_notebook_api.py."""

import asyncio

import atts


def test_run_and_arun_inside_a_loop_on_real_servers(testbed, tmp_path):
    cfg = testbed.config(tmp_path, sets=["policy.grouping=marginal", "calibration.limit=20"], limit=6)

    async def cell():
        blocking = atts.run(cfg, samples_per_question=2, output_dir=tmp_path / "run", progress=False)
        awaited = await atts.arun(cfg, samples_per_question=2, output_dir=tmp_path / "arun", progress=False)
        return blocking, awaited

    blocking, awaited = asyncio.run(cell())
    for run in (blocking, awaited):
        assert run.summary["n_samples_completed"] == 12 and run.summary["n_failed"] == 0
        assert len(run.samples) == 12 and run.manifest["git"] is not None
    assert [s["key"] for s in blocking.samples] == [s["key"] for s in awaited.samples]
    loaded = atts.load_run(tmp_path / "run")
    assert loaded.summary == blocking.summary and len(loaded.to_pandas()) == 12
