"""Issue 13 item 3: seeds are made real where the engine can honour them (deterministic
inference on GPU launches), said not honoured where they cannot (SGLang on CPU), and
policies are then compared per question, not per sample."""

from atts.analysis.paired import paired_by_question, sign_test
from atts.commands.compare import Entry, paired_section
from atts.config import parse_config
from atts.runtime.seed_support import DETERMINISTIC_FLAG, seed_support
from atts.serving.spec import ServerSpec


def test_gpu_launch_asks_for_deterministic_inference_cpu_does_not():
    assert DETERMINISTIC_FLAG in ServerSpec("draft", "m", device="cuda").argv(1234)
    assert DETERMINISTIC_FLAG not in ServerSpec("draft", "m", device="cpu").argv(1234)  # refused with torch_native


def _cfg(draft, target):
    return parse_config({"draft": {"model": "d", **draft}, "target": {"model": "t", **target},
                         "dataset": {"name": "arith"}, "policy": {"name": "draft_only"}})


def test_seed_support_by_engine():
    gpu = {"launch": True, "device": "cuda"}
    assert seed_support(_cfg(gpu, gpu))["seeds_honoured"] is True
    cpu = seed_support(_cfg({"launch": True}, gpu))
    assert cpu["seeds_honoured"] is False and "CPU" in cpu["reason"] and "torch_native" in cpu["reason"]
    remote = seed_support(_cfg({"urls": ["http://h:1"]}, gpu))
    assert remote["seeds_honoured"] is False and "cannot confirm" in remote["reason"]
    declared = {"urls": ["http://h:1"], "extra_args": [DETERMINISTIC_FLAG]}
    assert seed_support(_cfg(declared, {"urls": ["http://h:2"], "engine": "openai"}))["seeds_honoured"] is True


def _recs(correct_by_q):
    return [{"question_id": q, "correct": c} for q, cs in correct_by_q.items() for c in cs]


def test_paired_by_question_pairs_questions_not_samples():
    a = _recs({"q1": [0, 0], "q2": [1, 0], "q3": [1, 1], "q4": [0, 0]})
    b = _recs({"q1": [1, 1], "q2": [1, 1], "q3": [1, 1], "q4": [1, 0]})
    p = paired_by_question(a, b, seed=1, n_boot=500)
    assert p["n_questions"] == 4 and p["wins"] == 3 and p["losses"] == 0 and p["ties"] == 1
    assert abs(p["mean_diff"] - (1 + 0.5 + 0 + 0.5) / 4) < 1e-12
    assert p["ci"][0] <= p["mean_diff"] <= p["ci"][1]
    assert abs(p["sign_p"] - 0.25) < 1e-12  # 3 wins of 3: 2 * (1/2)^3
    assert sign_test(0, 0) == 1.0 and abs(sign_test(5, 5) - 1.0) < 1e-12


def test_compare_says_seeds_not_honoured_on_cpu_and_pairs_per_question():
    cfg = _cfg({"launch": True}, {"launch": True})
    recs = {"a": _recs({"q1": [0], "q2": [1]}), "b": _recs({"q1": [1], "q2": [1]})}
    out = paired_section(cfg, [Entry("a", cfg), Entry("b", cfg)], recs)
    assert out["seeds_honoured"] is False
    assert "Seeds not honoured" in out["paired_markdown"] and "Paired per question against a" in out["paired_markdown"]
    assert out["paired_by_question"]["b"]["wins"] == 1
