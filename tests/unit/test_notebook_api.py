"""``atts.run`` / ``atts.arun`` / ``atts.load_run`` from code, including from inside a
running event loop (a Jupyter cell's), on fake engines (no servers; the real-server
version is tests/server/test_notebook_api_real.py)."""

import asyncio
import json
import random
from pathlib import Path

import pytest

import atts
from atts.errors import UserError
from atts.runtime.runner import Role
from atts.testing.fakes import CountingEngine, FakePrompter

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / "configs" / "testbed.yaml"


def fake_roles(seed=0):
    rng = random.Random(seed)
    return {r: Role(r, CountingEngine(r, rng), FakePrompter(), 0.8) for r in ("draft", "target")}


def small(tmp_path, name="run", **kw):
    return dict(roles=fake_roles(), output_dir=tmp_path / name, limit=3, samples_per_question=2, progress=False,
                **{"policy": "draft_only"} | kw)


def test_run_called_inside_a_running_event_loop(tmp_path):
    async def notebook_cell():  # asyncio.run() would refuse here: a loop is already running
        asyncio.get_running_loop()
        return atts.run(CFG, **small(tmp_path))

    run = asyncio.run(notebook_cell())
    assert run.summary["n_samples_completed"] == 6 and run.summary["policy"] == "draft_only"
    assert len(run.samples) == 6 and {s["repeat"] for s in run.samples} == {0, 1}
    assert run.manifest["samples_per_question"] == 2


def test_run_without_a_loop_and_arun_awaited(tmp_path):
    plain = atts.run(CFG, **small(tmp_path, "plain"))

    async def cell():
        return await atts.arun(CFG, **small(tmp_path, "awaited"))

    awaited = asyncio.run(cell())
    # same config, same seeds, same fake engines: the same texts
    assert [s["text"] for s in plain.samples] == [s["text"] for s in awaited.samples]


def test_run_calibrates_a_calibrated_policy_first(tmp_path):
    run = atts.run(CFG, **small(tmp_path, "atts", policy="atts", set={"policy.grouping": "marginal",
                                                                      "calibration.limit": 4}))
    assert (tmp_path / "atts" / "calibration.json").is_file()
    assert run.manifest["calibration"]["hash"] and run.summary["policy"] == "atts"


def test_load_run_inside_a_loop_and_to_pandas(tmp_path):
    atts.run(CFG, **small(tmp_path))

    async def cell():
        return atts.load_run(tmp_path / "run")

    run = asyncio.run(cell())
    assert run.summary["pass@1"] is not None and "pass@1" in repr(run)
    pd = pytest.importorskip("pandas")
    df = run.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == 6
    assert {"key", "question_index", "repeat", "correct", "answer", "gold", "takeovers", "latency_s"} <= set(df)


def test_manifest_records_dataset_source_and_git_state(tmp_path):
    run = atts.run(CFG, **small(tmp_path))
    assert run.manifest["dataset_source"] == {"kind": "generated", "name": "chain", "seed": 0}
    git = run.manifest["git"]
    assert git is None or (len(git["revision"]) == 40 and isinstance(git["dirty"], bool))


def test_load_run_of_a_non_run_and_unknown_override(tmp_path):
    with pytest.raises(UserError, match="not an atts run directory"):
        atts.load_run(tmp_path)
    with pytest.raises(UserError, match="unknown override"):
        atts.run(CFG, roles=fake_roles(), nope=1)
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(UserError, match="invalid JSON"):
        atts.load_run(tmp_path)
    assert json.loads('{"a": 1}')  # keeps json import honest
