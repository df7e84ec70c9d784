"""Answer extraction and math-verify grading, on synthetic strings and on 1600 real traces."""

from atts.analysis.grade import read_trace_rows, trace_text
from atts.tasks.datasets import load_questions
from atts.tasks.grading import Grader, accuracy, extract_answer, extract_boxed


def test_extract_boxed_balanced_and_last():
    assert extract_boxed(r"so \boxed{\dfrac{5}{13}}.") == r"\dfrac{5}{13}"  # the research regex cut this to \dfrac{5
    assert extract_boxed("\\boxed{1}\n\nthen \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}") == r"\left( 3, \frac{\pi}{2} \right)"
    assert extract_boxed(r"\boxed{unclosed") is None and extract_boxed("no answer") is None
    assert extract_boxed(r"roots \(\boxed{3}\), \(\boxed{5}\) and \(\boxed{7}\).") == "3, 5, 7"
    assert extract_boxed("try \\boxed{3}\n\nso \\boxed{4}") == "4"  # earlier paragraphs do not count


def test_extract_multiple_choice():
    assert extract_answer(r"so \boxed{C}", "mc") == "C"
    assert extract_answer("Answer: B", "mc") == "B"
    assert extract_answer("I pick (D) here.", "mc") == "D"


def test_grader_in_worker_processes():
    items = [(r"\frac{1}{2}", "0.5", "math"), ("3", r"\left( 3, \frac{\pi}{2} \right)", "math"),
             (r"\left( 3, \frac{\pi}{2} \right)", r"\left( 3, \frac{\pi}{2} \right)", "math"),
             ("55", "55", "arith"), ("B", "B", "mc"), (None, "1", "math")]
    with Grader(2) as g:
        assert g.grade(items) == [True, False, True, True, True, False]


def test_accuracy_metrics():
    acc = accuracy({0: [("1", True), ("2", False), ("2", False)], 1: [(None, False), ("3", True)]})
    assert abs(acc.pass_at_1 - 2 / 5) < 1e-12 and acc.maj_at_k == 0.5 and acc.pass_at_k == 1.0


def test_grader_on_real_atts_traces(shared_traces, shared_datasets):
    """Our extraction + math-verify against the research code's LLM extraction, on the
    1600 real R1-Distill-Llama-8B / QwQ-32B traces (docs/grading.md lists the differences)."""
    gold = {q.problem: q.answer for q in load_questions("math500", data_dir=str(shared_datasets))}
    rows = read_trace_rows(shared_traces / "math500_r1llama8b_qwq32b.jsonl.gz")
    assert len(rows) == 1600
    texts = [trace_text(r) for r in rows]
    ours = [extract_answer(t) for t in texts]
    with Grader(2) as g:
        a = g.grade([(o, gold[r["question"]], "math") for o, r in zip(ours, rows)])
        b = g.grade([(r["final_answer_llm"], gold[r["question"]], "math") for r in rows])
    agree = sum(x == y for x, y in zip(a, b)) / len(rows)
    assert agree >= 0.98, agree  # measured 0.986 (23 of 1600 differ; docs/grading.md)
    assert abs(sum(a) / len(a) - 0.8156) < 0.01
