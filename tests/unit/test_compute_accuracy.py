"""`atts grade` / `python -m atts.compute_accuracy` on the 1600 real research traces, on
the research code's problem_XXXX.json layout, and its user errors. (Our own runs are
graded in tests/server/test_reextract_real.py, on a real testbed run.)"""

import json
import os
import subprocess
import sys

from atts.analysis.grade import compute, read_trace_rows
from conftest import ROOT

TRACES = "math500_r1llama8b_qwq32b.jsonl.gz"


def run(*args):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)


def test_grade_real_traces_cli(shared_traces, shared_datasets, tmp_path):
    """The research run's figures with our grader (docs/grading.md): the field it scored
    (final_answer = its LLM re-extraction), its regex, and our own extraction."""
    out = tmp_path / "traces.json"
    r = run("atts.cli", "grade", str(shared_traces), "--dataset", "math500", "--samples-per-question", "16",
            "--data-dir", str(shared_datasets), "--output", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["format"] == "research-traces" and res["answer_field"] == "final_answer"
    assert res["n_questions"] == 100 and res["n_samples"] == 1600
    assert abs(res["pass@1"] - 0.8200) < 1e-9 and res["maj@16"] == 0.92 and res["pass@16"] == 0.97
    f = res["fields"]
    assert abs(f["ours"]["pass@1"] - 0.8156) < 1e-3 and f["ours"]["n_verdicts_differ"] == 23
    assert abs(f["final_answer_regex"]["pass@1"] - 0.6981) < 1e-3
    assert "pass@1 0.8200" in r.stdout


def test_research_problem_files(shared_traces, shared_datasets, tmp_path):
    """The research code's per-sample files: problem_{idx:04d}.json with final_answer and
    full_history (model small / eval_ppl / eval_generate, output). Built here from the
    first two questions of the real traces, with final_answer made wrong on sample 1."""
    rows = read_trace_rows(shared_traces / TRACES)[:32]
    names = {"draft": "small", "target_score": "eval_ppl", "target_generate": "eval_generate"}
    d = tmp_path / "research"
    d.mkdir()
    for r in rows:
        hist = [{"turn": int(s["turn"]), "model": names[s["model"]], "output": s.get("text"), "ppl": s.get("ppl")}
                for s in r["steps"]]
        final = "-12345" if r["sample"] == 1 else r["final_answer_llm"]
        (d / f"problem_{r['sample']:04d}.json").write_text(json.dumps({
            "problem_index": r["sample"], "question": r["question"], "final_answer": final,
            "duration_seconds": r["duration_seconds"], "full_history": hist}))
    res = compute(d, dataset="math500", samples_per_question=16, data_dir=str(shared_datasets), per_sample=True)
    assert res["format"] == "research-problems" and res["n_questions"] == 2 and res["n_samples"] == 32
    s1 = next(s for s in res["samples"] if s["key"] == "sample-00001")
    assert s1["correct"]["final_answer"] is False and s1["answers"]["final_answer"] == "-12345"
    # our extraction reads the history's generated text (small + eval_generate outputs)
    assert res["fields"]["ours"]["n_samples"] == 32 and res["fields"]["ours"]["pass@1"] > 0.5
    assert res["latency_median"] > 0
    # the answer field can be chosen
    res2 = compute(d, dataset="math500", samples_per_question=16, data_dir=str(shared_datasets), answer_field="ours")
    assert res2["answer_field"] == "ours" and res2["pass@1"] == res["fields"]["ours"]["pass@1"]


def test_grade_user_errors(shared_traces, tmp_path):
    r = run("atts.compute_accuracy", str(shared_traces), "--dataset", "math500")
    assert r.returncode == 2 and "--samples-per-question" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run("atts.compute_accuracy", str(tmp_path / "nope"), "-K", "4")
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr, r.stderr
    (tmp_path / "empty").mkdir()
    r = run("atts.compute_accuracy", str(tmp_path / "empty"), "-K", "4")
    assert r.returncode == 2 and "neither an atts run" in r.stderr, r.stderr


def test_wrong_k_is_caught(shared_traces, shared_datasets):
    """K=15 puts samples of two questions in one group: refused, not silently graded."""
    r = run("atts.compute_accuracy", str(shared_traces / TRACES), "--dataset", "math500", "-K", "15",
            "--data-dir", str(shared_datasets))
    assert r.returncode == 2 and "mixes" in r.stderr and "Traceback" not in r.stderr, r.stderr
