"""Issue 13 item 2: a held-out calibration split for every real dataset, phase-salted
request seeds, the calibration's question ids and evaluate's refusal of an overlap.
No servers: fake engines (atts.testing.fakes), local files and a stand-in `datasets`
module for the hub code path."""

import asyncio
import json
import sys
import types

import pytest

from atts import cli
from atts.commands import evaluate as ev
from atts.commands.calibrate import calibrate_async, calibration_meta
from atts.config import parse_config
from atts.errors import CalibrationError
from atts.method.conformal import CalibrationFile
from atts.runtime.runner import Chunking, Role, SampleContext, SampleState, request_seed
from atts.tasks import datasets as dsm
from atts.tasks.datasets import Question, load_questions
from atts.testing.fakes import FakePrompter, SeededEngine


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_partition_is_disjoint_fixed_and_documented_size(tmp_path):
    _write(tmp_path / "aime24.jsonl", [{"id": i, "problem": f"p{i}", "answer": str(i)} for i in range(30)])
    load = lambda split: load_questions("aime24", split=split, source="local", data_dir=str(tmp_path))  # noqa: E731
    cal, test, every = load("calibration"), load("test"), load("all")
    assert len(cal) == 9 and len(test) == 21 and len(every) == 30  # ceil(0.3 * 30) = 9
    assert not {q.id for q in cal} & {q.id for q in test}
    assert {q.id for q in cal} | {q.id for q in test} == {q.id for q in every}
    assert [q.index for q in test] == list(range(21))
    assert [q.id for q in load("calibration")] == [q.id for q in cal]  # the same every time, no config seed


def test_math500_calibrates_on_math_train_local_copy(tmp_path):
    _write(tmp_path / "math500.jsonl", [{"id": "test/a/1.json", "problem": "x", "answer": "1"}])
    _write(tmp_path / "math_train.jsonl", [{"problem": "1+1?", "solution": "So it is $\\boxed{2}$."},
                                           {"problem": "2+2?", "solution": "Thus \\boxed{\\frac{8}{2}}."}])
    cal = load_questions("math500", split="calibration", source="local", data_dir=str(tmp_path))
    assert [(q.id, q.answer) for q in cal] == [("train/0", "2"), ("train/1", "\\frac{8}{2}")]
    test = load_questions("math500", split="test", source="local", data_dir=str(tmp_path))
    assert [q.id for q in test] == ["test/a/1.json"]


def test_train_split_hub_path_loads_the_dataset_train_split(tmp_path, monkeypatch):
    calls = []

    def load_dataset(path, conf, split):
        calls.append((path, conf, split))
        return [{"question": "Q?", "answer": "work\n#### 1,234"}]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    qs = load_questions("gsm8k", split="calibration", source="hub", data_dir=str(tmp_path))
    assert calls == [("openai/gsm8k", "main", "train")]
    assert [(q.id, q.answer) for q in qs] == [("train/0", "1234")]
    load_questions("math500", split="calibration", source="hub", data_dir=str(tmp_path))
    assert calls[-1] == ("DigitalLearningGmbH/MATH-lighteval", "default", "train")


def _ctx(chunking, seeds):
    class Recording(SeededEngine):
        async def generate(self, ids, *, seed=None, **kw):
            seeds.append(seed)
            return await super().generate(ids, seed=seed, **kw)

    roles = {r: Role(r, Recording(r), FakePrompter(), 0.8) for r in ("draft", "target")}
    return SampleContext(SampleState(Question(0, "q0", "p", "1", "arith"), 0), roles, chunking)


def test_request_seeds_are_salted_by_phase():
    seeds = []
    base = Chunking(("\n\n",), 8, 3, 100)
    for phase in ("evaluation", "evaluation", "calibration"):
        asyncio.run(_ctx(Chunking(("\n\n",), 8, 3, 100, phase=phase), seeds).generate("draft"))
    assert seeds[0] == seeds[1] != seeds[2]
    assert base.phase == "evaluation"
    assert request_seed(0, "q", phase="calibration") != request_seed(0, "q", phase="evaluation")


def _cfg(tmp_path, **over):
    d = {"draft": {"model": "d", "urls": ["http://127.0.0.1:9"]}, "target": {"model": "t", "urls": ["http://127.0.0.1:9"]},
         "dataset": {"name": "arith", "split": "test", "size": 6},
         "policy": {"name": "atts", "grouping": "marginal", "pipeline": False},
         "chunking": {"stop": ["\n\n"], "max_tokens_per_chunk": 8, "max_turns": 2},
         "calibration": {"split": "calibration", "path": str(tmp_path / "cal.json"), "samples_per_question": 2},
         "output_dir": str(tmp_path / "run")}
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) else v
    return parse_config(d)


def _roles(seeds=None):
    class Recording(SeededEngine):
        counters: dict = {}

        async def generate(self, ids, *, seed=None, **kw):
            if seeds is not None:
                seeds.append(seed)
            return await super().generate(ids, seed=seed, **kw)

    return {r: Role(r, Recording(r), FakePrompter(), 0.8) for r in ("draft", "target")}


def test_calibration_records_its_questions_and_uses_calibration_seeds(tmp_path):
    cfg = _cfg(tmp_path)
    seeds = []
    cal = asyncio.run(calibrate_async(cfg, _roles(seeds), limit=4, progress=False))
    cal_ids = load_questions("arith", split="calibration", size=4)
    assert cal.meta["questions"] == [q.id for q in cal_ids]
    assert cal.meta["calibrated_on_test"] is False and cal.meta["split"] == "calibration"
    q = cal_ids[0]
    expected = request_seed(cfg.sampling.seed, q.id, 0, 0, "draft", 0, phase="calibration")
    assert expected in seeds
    assert request_seed(cfg.sampling.seed, q.id, 0, 0, "draft", 0) not in seeds


def _cal_file(cfg, questions, on_test):
    meta = calibration_meta(cfg) | {"questions": questions, "calibrated_on_test": on_test}
    cal = CalibrationFile("marginal", {"all": [1.0] * 20}, meta)
    cal.save(cfg.calibration_path)
    return cal


def test_evaluate_refuses_overlap_unless_calibrated_on_test(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    evaluated = [q.id for q in load_questions("arith", split="test", size=6)]
    _cal_file(cfg, evaluated[:2] + ["other"], on_test=False)
    with pytest.raises(CalibrationError, match="calibrated on 2 of the evaluated questions"):
        ev.preflight(cfg, None, force=False)
    with pytest.raises(CalibrationError):  # --force does not lift it
        ev.preflight(cfg, None, force=True)
    _cal_file(cfg, ["other"], on_test=False)
    ev.preflight(cfg, None, force=False)  # held out: fine
    on_test = _cfg(tmp_path, calibration={"split": None})
    _cal_file(on_test, evaluated, on_test=True)
    ev.preflight(on_test, None, force=False)  # calibrate-on-test chosen: fine


def test_evaluate_cli_overlap_is_one_line_exit_2(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    evaluated = [q.id for q in load_questions("arith", split="test", size=6)]
    _cal_file(cfg, evaluated, on_test=False)
    (tmp_path / "c.yaml").write_text(json.dumps(cfg.to_dict() | {"policy": cfg.to_dict()["policy"]}))
    rc = cli.main(["evaluate", "--config", str(tmp_path / "c.yaml"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "evaluated questions" in err


def test_manifest_and_summary_record_calibration_split_and_seeds(tmp_path):
    cfg = _cfg(tmp_path, calibration={"split": None})
    evaluated = [q.id for q in load_questions("arith", split="test", size=6)]
    _cal_file(cfg, evaluated, on_test=True)
    s = asyncio.run(ev.evaluate_async(cfg, _roles(), progress=False))
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["questions"] == evaluated
    assert man["calibration"]["calibrated_on_test"] is True and man["calibration"]["split"] == "test"
    assert s["calibration"]["calibrated_on_test"] is True
    assert man["seeds_honoured"] is False and "not launched by atts" in man["seeds"]["reason"]
    assert s["seeds_honoured"] is False and s["seeds_note"]
    assert s["budget_accuracy"]["n_groups"] > 0
