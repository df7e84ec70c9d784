"""The reasoning-shaped testbed (configs/testbed.yaml, the `chain` task, models/chain-*)
has the real workload's shape (../shared/reference/REAL_WORKLOAD.md): its own reference
solutions, replayed through the config's chunking with the draft's own tokenizer, span a
median of 2-3 chunks, a mean of about 4, at most 5% reach the turn cap; chunks hold at
least 120 tokens at the median; draft and target have different vocabularies; the
templates open a reasoning block as R1's and QwQ's do."""

import re
import statistics

import pytest

from atts.config import load_config
from atts.tasks import reasoning
from atts.tasks.chunk_replay import replay_with_config, tokenize
from atts.testing.testbed import ROOT
from conftest import measure_script


CFG = load_config(ROOT / "configs" / "testbed.yaml")


def _tok(role: str):
    from transformers import AutoTokenizer  # heavy: only these tests load it

    path = ROOT / getattr(CFG, role).model
    if not (path / "tokenizer.json").is_file():
        pytest.fail(f"missing committed checkpoint {path}")
    return AutoTokenizer.from_pretrained(str(path))


def test_chunks_per_solution_look_like_real_runs():
    tok = _tok("draft")
    reps = [replay_with_config(tokenize(reasoning.reference_solution(p), tok), None, CFG.chunking)
            for p in reasoning.generate("test", 400)]
    turns = [r.turns for r in reps]
    full = [n for r in reps for n in r.chunk_tokens[:-1]]  # every chunk but a solution's last
    assert 2 <= statistics.median(turns) <= 3, statistics.median(turns)
    assert 3.0 <= statistics.fmean(turns) <= 5.0, statistics.fmean(turns)
    assert sum(r.cut_off for r in reps) / len(reps) <= 0.05
    assert statistics.median(full) >= 120 and not CFG.chunking.stop  # fixed-size chunks, no stop string


def test_draft_and_target_vocabularies_differ_and_templates_open_reasoning():
    d, t = _tok("draft"), _tok("target")
    assert d.get_vocab() != t.get_vocab() and len(d) != len(t)
    text = reasoning.reference_solution(reasoning.generate("test", 1)[0])
    assert d.encode(text, add_special_tokens=False) != t.encode(text, add_special_tokens=False)
    for tok in (d, t):
        prompt = tok.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True, tokenize=False)
        assert prompt.endswith("<think>\n")
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text  # byte-level: exact round trip


def test_paper_shape_of_the_config():
    p = CFG.policy.params
    assert (CFG.chunking.max_turns, p.mode, p.max_resample, p.grouping) == (15, "append", 0, "per_turn")
    assert 0.3 <= p.alpha <= 0.5 and CFG.calibration.split == "calibration" and CFG.dataset.split == "test"


def test_the_error_judge_reads_count_down_and_values_not_round_numbers():
    """`reasoning.first_error`: a reference solution is right; a wrong result, a wrong
    count-down, or a wrong start value is an error at its paragraph; a wrong round number
    with the right count-down and value (the draft's commonest slip, harmless to the
    answer) is one only with ``labels=True``."""
    import random

    p = next(q for q in reasoning.generate("test", 50) if q.rounds >= 4)
    text = reasoning.solve(p, random.Random(0)).text
    assert reasoning.first_error(p, text) is None and reasoning.first_error(p, text, labels=True) is None
    paras = text.split(reasoning.PARAGRAPH)
    i = next(k for k, x in enumerate(paras) if x.startswith(("Round 2 (", "In round 2 (", "For round 2 (")))
    off = len(reasoning.PARAGRAPH.join(paras[:i])) + len(reasoning.PARAGRAPH)

    def edited(old: str, new: str) -> str:
        return reasoning.PARAGRAPH.join(paras[:i] + [paras[i].replace(old, new, 1)] + paras[i + 1:])

    relabelled = edited("ound 2 (", "ound 3 (")
    assert reasoning.first_error(p, relabelled) is None
    assert reasoning.first_error(p, relabelled, labels=True) == off
    left = p.rounds - 2
    assert reasoning.first_error(p, edited(f"({left} left)", f"({left + 1} left)")) == off
    result = str(reasoning._value_after(p, 2))
    assert reasoning.first_error(p, edited(f"= {result}", f"= {int(result) + 1}")) == off


def test_error_kind_reads_a_finished_chunk_whole():
    """`first_error_kind(complete=True)` judges the last paragraph too: a finished draft
    chunk whose only error is its boxed answer is a closing error, not None (the
    measurement script crashed sorting a None kind before it passed ``complete``)."""
    import random

    p = reasoning.generate("test", 1)[0]
    text = reasoning.solve(p, random.Random(0)).text
    wrong = text.replace(f"\\boxed{{{p.answer}}}", f"\\boxed{{{int(p.answer) + 1}}}")
    assert wrong != text
    assert reasoning.first_error_kind(p, wrong) is None  # the last paragraph taken as cut off
    assert reasoning.first_error_kind(p, wrong, complete=True) == "closing"
    assert reasoning.first_error_kind(p, text, complete=True) is None


def test_an_error_that_the_rule_forgets_washes_out():
    """`error_washes_out`: the other branch at 34 (threshold 37, +6 / -6) gives 28, and 28 + 6
    = 34 is the right answer after 2 rounds anyway (a case the measurement counted as a
    repair); a wrong value of 50 goes on to 44 and changes the answer; a right text or a
    closing error does not wash out."""
    rule = reasoning.Rule("threshold", 6, 6, 37)
    p = reasoning.ChainProblem("x", "Mia has 34 marbles. ...", "34", 34, rule, 2)
    head = ["Okay, let me work through this step by step.", "We start with 34."]

    def text(*paras):
        return reasoning.PARAGRAPH.join(head + list(paras))

    right = text("Round 1 (1 left): 34 is less than 37, so I add 6. 34 + 6 = 40.", "Round 2 (0 left): ")
    branch = text("Round 1 (1 left): 34 is not less than 37, so I take away 6. 34 - 6 = 28.", "Round 2 (0 left): ")
    value = text("Round 1 (1 left): 34 is less than 37, so I add 6. 34 + 6 = 50.", "Round 2 (0 left): ")
    closing = text("Round 1 (1 left): 34 is less than 37, so I add 6. 34 + 6 = 40.",
                   "All 2 rounds are done, and the value is 40.", "The final value is \\boxed{40}.")
    assert reasoning.first_error_kind(p, branch) == "branch" and reasoning.error_washes_out(p, branch)
    assert reasoning.first_error_kind(p, value) == "value" and not reasoning.error_washes_out(p, value)
    assert not reasoning.error_washes_out(p, right) and reasoning.first_error(p, right, complete=False) is None
    assert reasoning.first_error_kind(p, closing, complete=True) == "closing"
    assert not reasoning.error_washes_out(p, closing, complete=True)


def _judged_as_injected(p, s) -> tuple[int, bytearray]:
    """An error lesson ``s`` for ``p`` ends at the right answer, its first paragraph
    without loss is the judge's first error, and its text with the wrong paragraphs
    removed is right. Returns that paragraph's offset and the loss mask."""
    from atts.tasks.grading import extract_boxed

    assert extract_boxed(s.text) == p.answer
    covered = bytearray(len(s.text))
    for a, b in s.loss_spans:
        covered[a:b] = b"\x01" * (b - a)
    first_wrong = covered.index(0)
    assert reasoning.first_error(p, s.text) == first_wrong
    assert reasoning.first_error(p, "".join(s.text[a:b] for a, b in s.loss_spans)) is None
    return first_wrong, covered


def test_the_draft_like_error_lessons_are_draft_like_and_repaired():
    """`reasoning.solve(with_error=True, errors="draft")`, the shipped target's repair
    lessons: every kind of the draft's errors (`ERROR_KINDS`) appears, carried on for 0
    to 4 rounds and sometimes through the closing answer; the first paragraph without loss is the judge's first
    error; with the wrong paragraphs removed the text is right; the answer is right; and
    the paragraph break after a wrong boxed answer carries loss (going on instead of
    stopping is what the target must learn)."""
    import random
    import re

    rng, kinds, through, carries = random.Random(0), set(), 0, set()
    for p in reasoning.generate("train", 600):
        s = reasoning.solve(p, rng, with_error=True, errors="draft")
        first_wrong, covered = _judged_as_injected(p, s)
        fix = next(x for x in s.text[first_wrong:].split(reasoning.PARAGRAPH)
                   if re.search("not right|mistake|was wrong|recheck", x))
        kinds.add("closing" if re.search("rounds are done|rounds, not|[Aa]fter round", fix)
                  else "branch" if re.search(r"\d+ is (even|odd|less|not less)", fix) else "value")
        wrong_rounds = [x for x in s.text[first_wrong:s.text.index(fix)].split(reasoning.PARAGRAPH)
                        if reasoning._ROUND.search(x) and reasoning._EQ.search(x)]
        carries.add(max(0, len(wrong_rounds) - 1))
        boxes = [m.start() for m in reasoning._BOXED.finditer(s.text)]
        if len(boxes) > 1:
            through += 1
            brk = s.text.index(reasoning.PARAGRAPH, boxes[0])
            assert covered[brk], "the break after a wrong boxed answer must carry loss"
    assert kinds == set(reasoning.ERROR_KINDS)
    assert carries >= {0, 1, 2, 3, 4}
    assert 0.05 < through / 600 < 0.4


def test_look_back_lessons_find_the_error_they_carry():
    """`reasoning.solve(errors="recheck")`: a clean solution holds look-backs that redo the
    last rounds and are right (`first_error` None, not a correction); with an error, the
    first paragraph without loss is the judge's first error, a look-back with loss redoes
    the wrong round to its right result and names the written one ("but I wrote B"), the
    kept text is right and so is the answer. A look-back with a wrong sum is an error."""
    import random

    from atts.tasks.grading import extract_boxed

    rng, found = random.Random(0), 0
    for p in reasoning.generate("train", 400):
        clean = reasoning.solve(p, rng, errors="recheck").text
        assert reasoning.first_error(p, clean) is None and extract_boxed(clean) == p.answer
        looks = [x for x in clean.split(reasoning.PARAGRAPH) if x.startswith(reasoning.LOOK_BACK_OPENINGS)]
        assert p.rounds < max(reasoning.LOOK_BACK_EVERY) or looks
        assert not any(map(reasoning.is_correction, looks))
        if looks:
            with_look = (p, clean, looks[0])
        s = reasoning.solve(p, rng, with_error=True, errors="recheck")
        first_wrong, _ = _judged_as_injected(p, s)
        miss = [x for x in s.text[first_wrong:].split(reasoning.PARAGRAPH)
                if x.startswith(reasoning.LOOK_BACK_OPENINGS) and "but I wrote" in x]
        if miss:  # a wrong value or branch (not a closing error)
            found += 1
            assert reasoning.is_correction(miss[0])
            a, op, b, c = reasoning._EQ.findall(miss[0])[-1]
            assert int(c) == p.rule.apply(int(a)) and f"{op} {b}" == p.rule.branch(int(a))[2]
            bad = int(miss[0].split("but I wrote ")[1].split(",")[0])
            assert bad != int(c) and f"= {bad}" in s.text[first_wrong:s.text.index(miss[0])]
    assert found > 250
    p, clean, look = with_look
    a, op, b, c = reasoning._EQ.findall(look)[0]
    wrong_look = clean.replace(look, look.replace(f" = {c}", f" = {int(c) + 1}", 1))
    assert reasoning.first_error(p, wrong_look) is not None
    assert reasoning.first_error_kind(p, wrong_look) == "look-back"


def test_resume_lessons_name_the_round_that_comes_next_after_every_look_back():
    """`reasoning.solve(errors="resume")`: every look-back that is not after the last round
    is followed (after its redo, if it found an error) by a `RESUME` paragraph with loss
    that names the next round's number, count-down and start value exactly as the next
    round paragraph writes them; clean solutions stay right."""
    import random

    rng, resumes = random.Random(2), 0
    for p in reasoning.generate("train", 300):
        for with_error in (False, True):
            sol = reasoning.solve(p, rng, with_error=with_error, errors="resume")
            kept = "".join(sol.text[a:b] for a, b in sol.loss_spans)
            paras = sol.text.split(reasoning.PARAGRAPH)
            if not with_error:
                assert reasoning.first_error(p, sol.text) is None
            for i, para in enumerate(paras):
                if not para.startswith(reasoning.LOOK_BACK_OPENINGS):
                    continue
                j = i + 1 + (paras[i + 1].startswith(("So after round", "So the correct value")))
                if paras[j].startswith(("That was the last", "All ", "So after every")):
                    continue  # after the last round: the closing follows
                resume = paras[j]
                # the round paragraph that follows (past an injected early closing and its fix)
                step = next(x for x in paras[j + 1:] if reasoning._LEFT.search(x) and reasoning._EQ.search(x))
                r, left, v = map(int, reasoning._NUM.findall(resume))
                assert resume in kept and not resume.startswith(reasoning.LOOK_BACK_OPENINGS), resume
                assert f"round {r}" in step.lower() and f"{left} left" in step, (resume, step)
                assert reasoning._EQ.findall(step)[0][0] == str(v)
                resumes += 1
    assert resumes > 300


def test_continue_only_lessons_open_no_look_back_but_go_on_with_one():
    """`reasoning.continue_only` (`--draft-look-backs continue`): every look-back opening
    loses its loss, character for character, and nothing else does; the rounds it redoes
    and what follows keep theirs, so a draft learns to go on with a look-back the target
    opened but never to open one."""
    import random

    def carries(spans, i):
        return any(a <= i < b for a, b in spans)

    rng, openings = random.Random(1), 0
    for p in reasoning.generate("train", 60):
        for with_error in (False, True):
            sol = reasoning.solve(p, rng, with_error=with_error, errors="recheck")
            cut = reasoning.continue_only(sol)
            assert cut.text == sol.text
            found = [m.span() for o in reasoning.LOOK_BACK_OPENINGS for m in re.finditer(re.escape(o), sol.text)]
            gone = {i for a, b in found for i in range(a, b)}
            openings += len(found)
            for i in range(len(sol.text)):
                assert carries(cut.loss_spans, i) == (carries(sol.loss_spans, i) and i not in gone), (p.id, i)
            for _, end in found:  # the first redone round, right after the opening, keeps its loss
                assert carries(cut.loss_spans, end) and sol.text[end:].startswith("round ")
    assert openings > 150


def test_first_errors_of_a_run_are_put_on_the_chunk_that_made_them(tmp_path):
    """`scripts/measure_testbed_models.py --first-errors-of`: a sample whose draft chunk is
    right and whose takeover chunk holds a wrong value counts as a first error by the
    target, brought after right text; a clean sample counts as none."""
    import json
    import random

    m = measure_script()
    p = reasoning.generate("test", 1)[0]
    text = reasoning.solve(p, random.Random(0)).text
    paras = text.split(reasoning.PARAGRAPH)
    head = reasoning.PARAGRAPH.join(paras[:2]) + reasoning.PARAGRAPH  # intro and start: right
    tail = text[len(head):]
    a, op, b, c = reasoning._EQ.findall(tail)[0]
    wrong_tail = tail.replace(f"= {c}", f"= {int(c) + 10}", 1)
    (tmp_path / "samples").mkdir()

    def step(role, t, finish):
        return {"role": role, "text": t, "kept": True, "finish": finish}

    for k, (t2, correct) in enumerate(((wrong_tail, False), (tail, True))):
        rec = {"question_id": p.id, "correct": correct,
               "steps": [step("draft", head, "length"), step("target", t2, "stop")]}
        (tmp_path / "samples" / f"{k}.json").write_text(json.dumps(rec))
    got = m.first_errors_of_run(tmp_path)
    assert got["samples"] == 2 and got["first_error_by_target"] == 1 and got["first_error_by_None"] == 1
    assert got["target_chunks_after_right_text"] == 2 and got["target_chunks_that_brought_the_first_error"] == 1


def test_gate_figures_take_over_what_the_runtime_gate_would():
    """`scripts/measure_testbed_models.py`'s `gate_at_alpha`: on calibration PPLs 1.00-1.99
    at alpha 0.4 the gate takes over a PPL of 1.70 and lets 1.50 through (the runtime's
    `ConformalCalibration`); chunks after an earlier error are not judged; and
    `accuracy_model` reads p0 + (1 - p0) x recall x repair."""
    m = measure_script()
    calibration = [1 + i / 100 for i in range(100)]
    chunks = [{"prefix_ok": True, "error": True, "ppl": 1.7}, {"prefix_ok": True, "error": True, "ppl": 1.5},
              {"prefix_ok": True, "error": False, "ppl": 1.2}, {"prefix_ok": True, "error": False, "ppl": 1.9},
              {"prefix_ok": False, "error": True, "ppl": 9.0}]
    g = m.gate_figures(chunks, calibration, 0.4)
    assert g["recall"]["k"] == 1 and g["recall"]["n"] == 2
    assert g["false_alarm"]["k"] == 1 and g["false_alarm"]["n"] == 2
    assert g["takeover"]["k"] == 2 and g["takeover"]["n"] == 4
    assert 1.59 < g["threshold_ppl"] < 1.62
    out = {"draft_chunked_pass@1": {"rate": 0.6}, "target_pass@1": {"rate": 0.97}, "gate_at_alpha": g,
           "append_repair_one_takeover": {"answer_changing": {"rate": 0.5}}}
    acc = m.accuracy_model(out)
    assert abs(acc["predicted_atts_pass@1"] - (0.6 + 0.4 * 0.5 * 0.5)) < 1e-9
    assert abs(acc["recall_x_repair_needed"] - (0.95 - 0.6) / 0.4) < 1e-9


def test_within_turn_auroc_compares_a_chunk_only_with_its_own_turn():
    """`separation`'s `by_turn` and `auroc_within_turn`: when every wrong chunk is above the
    right ones of its own turn but a later turn's PPLs sit higher overall, the within-turn
    AUROC is 1 and the pooled one is not; turns from 3 on are pooled into "3+"; chunks
    after an earlier error are not judged."""
    m = measure_script()
    chunks = [{"turn": 0, "prefix_ok": True, "error": False, "ppl": 1.0},
              {"turn": 0, "prefix_ok": True, "error": True, "ppl": 2.0},
              {"turn": 1, "prefix_ok": True, "error": False, "ppl": 3.0},
              {"turn": 1, "prefix_ok": True, "error": True, "ppl": 4.0},
              {"turn": 5, "prefix_ok": True, "error": False, "ppl": 1.5},
              {"turn": 6, "prefix_ok": False, "error": True, "ppl": 0.5}]
    s = m.separation(chunks, "")
    assert s["auroc_within_turn"] == 1.0 and s["auroc_within_turn_interval"] == [1.0, 1.0]
    assert abs(s["auroc_target_ppl"] - 5 / 6) < 1e-9  # 2.0 loses to the turn-1 right chunk 3.0
    assert s["by_turn"]["0"] == {"n_wrong": 1, "n_right": 1, "auroc": 1.0, "median_ppl_right": 1.0}
    assert s["by_turn"]["3+"]["n_wrong"] == 0 and s["by_turn"]["3+"]["auroc"] is None
