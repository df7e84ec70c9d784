"""The three trace forms load into the same shape, from small fixtures built here (the
research ones from the shared traces: skipped with a reason when ../shared is absent)."""

import json

import pytest

from atts.sim.traces import TraceError, load_trace
from sim_fakes import make_atts_run, make_research_problems, make_research_traces, research_rows


def _shape(trace):
    return [(s.question_index, s.repeat, [(st.turn, st.role, st.kind, st.text, st.ppl, st.finish, st.decision)
                                          for st in s.steps]) for s in trace.samples]


def test_research_traces_file(shared_traces, tmp_path):
    p = make_research_traces(shared_traces, tmp_path / "t", n=32)
    t = load_trace(p)
    rows = research_rows(shared_traces, 32)
    assert t.form == "research-traces" and len(t.samples) == 32 and t.samples_per_question == 16
    assert len(t.calibration) == 1600  # the .npy beside the file
    s0, r0 = t.samples[0], rows[0]
    assert [st.role + ":" + st.kind for st in s0.steps] == [
        {"draft": "draft:generate", "target_score": "target:score", "target_generate": "target:generate"}[x["model"]]
        for x in r0["steps"]]
    assert s0.duration_s == r0["duration_seconds"]
    # the last chunk ends the sample, every earlier one was cut at max_tokens
    gens = [st for st in s0.steps if st.kind == "generate"]
    assert gens[-1].finish == "eos" and {g.finish for g in gens[:-1]} <= {"length"}
    # a turn with a target generation was a takeover
    for st in s0.steps:
        if st.kind == "score":
            took = any(x.turn == st.turn and x.role == "target" and x.kind == "generate" for x in s0.steps)
            assert st.decision == ("takeover" if took else "accept")
    assert load_trace(p.parent).form == "research-traces"  # a directory holding the file


def test_research_problem_files_equal_the_traces(shared_traces, tmp_path):
    a = load_trace(make_research_traces(shared_traces, tmp_path / "t", n=32))
    b = load_trace(make_research_problems(shared_traces, tmp_path / "p", n=32))
    assert b.form == "research-problems" and len(b.samples) == 32
    assert _shape(a) == _shape(b)  # turns recovered without a turn field
    assert [s.duration_s for s in a.samples] == [s.duration_s for s in b.samples]


def test_atts_run_directory(tmp_path):
    run = make_atts_run(tmp_path / "run", n_questions=3, k=2)
    t = load_trace(run)
    assert t.form == "atts-run" and len(t.samples) == 6 and t.calibration_file is not None
    assert t.policy["name"] == "atts" and t.chunking["max_turns"] == 6
    recs = {json.loads(p.read_text())["key"]: json.loads(p.read_text()) for p in (run / "samples").glob("*.json")}
    for s in t.samples:
        rec = recs[s.key]
        gens = [st for st in s.steps if st.kind == "generate"]
        assert [(g.turn, g.role, g.attempt, g.text, g.finish) for g in gens] == [
            (x["turn"], x["role"], x["attempt"], x["text"], x["finish"]) for x in rec["steps"]]
        assert [st.ppl for st in s.steps if st.kind == "score"] == [x["ppl"] for x in rec["steps"] if "ppl" in x]
        assert s.question_id == rec["question_id"]


def test_unknown_input_is_a_user_error(tmp_path):
    with pytest.raises(TraceError, match="no such file"):
        load_trace(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TraceError, match="neither an atts run"):
        load_trace(tmp_path / "empty")


def test_cli_user_errors_exit_2(tmp_path, capsys):
    from atts.sim.__main__ import main

    hw = "configs/hardware/cpu_testbed.yaml"
    assert main(["--traces", str(tmp_path / "nope"), "--hardware", hw, "--schedule", "research",
                 "--output", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    run = make_atts_run(tmp_path / "run", n_questions=1, k=2)
    assert main(["--traces", str(run), "--hardware", str(tmp_path / "none.yaml"), "--schedule", "concurrent",
                 "--output", str(tmp_path / "o")]) == 2
    assert "hardware profile" in capsys.readouterr().err
