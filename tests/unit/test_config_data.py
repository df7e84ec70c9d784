"""Config validation, datasets, arith splits (pure logic, local files)."""

import json

import pytest

from atts.tasks import arith
from atts.config import ConfigError, load_config, parse_config, with_overrides
from atts.tasks.datasets import DatasetError, load_questions
from conftest import ROOT


def base():
    return {"draft": {"model": "d", "urls": ["http://127.0.0.1:1"]},
            "target": {"model": "t", "urls": ["http://127.0.0.1:2"]},
            "dataset": {"name": "arith"}, "policy": {"name": "atts"}}


def test_shipped_configs_validate():
    for p in sorted((ROOT / "configs").glob("*.yaml")):
        if p.name != "bench_targets.yaml":  # not a run config: atts bench's planning targets
            load_config(p)


@pytest.mark.parametrize("patch,needle", [
    (lambda d: d.update(bogus=1), "bogus: unknown key"),
    (lambda d: d["chunking"].update(max_turn=3) if "chunking" in d else d.update(chunking={"max_turn": 3}), "chunking.max_turn: unknown key"),
    (lambda d: d.update(chunking={"max_turns": "many"}), "chunking.max_turns: expected an integer"),
    (lambda d: d.update(chunking={"max_turns": 0}), "chunking.max_turns: must be > 0"),
    (lambda d: d["policy"].update(alpha=1.5), "policy.alpha"),
    (lambda d: d["policy"].update(name="nope"), "policy.name: unknown policy"),
    (lambda d: d["policy"].update(mode="sideways"), "policy.mode"),
    (lambda d: d["dataset"].update(name="imagenet"), "dataset.name: unknown dataset"),
    (lambda d: d["draft"].update(urls=[]), "draft: set `launch: true`"),
    (lambda d: d["target"].update(max_concurrency=-1), "target.max_concurrency"),
])
def test_bad_config_names_the_key(patch, needle):
    d = base()
    patch(d)
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace("`", "`")):
        parse_config(d)


def test_overrides_win():
    cfg = parse_config(base())
    c2 = with_overrides(cfg, alpha=0.2, samples_per_question=3, limit=7, policy="draft_only")
    assert c2.policy.name == "draft_only" and c2.samples_per_question == 3 and c2.dataset.limit == 7
    assert with_overrides(cfg, alpha=0.25).policy.params.alpha == 0.25
    assert with_overrides(cfg, policy="draft_only", alpha=0.3).policy.name == "draft_only"  # no alpha: ignored


def test_arith_splits_disjoint_and_deterministic():
    tr = {p.problem for p in arith.generate("train", 5000)}
    ca = arith.generate("calibration", 300)
    te = arith.generate("test", 300)
    assert not tr & {p.problem for p in ca} and not tr & {p.problem for p in te}
    assert not {p.problem for p in ca} & {p.problem for p in te}
    assert [p.problem for p in arith.generate("test", 50)] == [p.problem for p in te[:50]]
    for p in te[:100]:
        steps, value = arith.solve(_tokens(p.problem))
        assert str(value) == p.answer and p.solution.endswith(f"\\boxed{{{p.answer}}}.")
        assert p.solution.count("\n\n") == len(steps)


def _tokens(problem):
    toks = problem[len("Compute "):-1].split()
    return [int(t) if t.isdigit() else t for t in toks]


def test_shared_datasets_load(shared_datasets):
    m = load_questions("math500", data_dir=str(shared_datasets))
    assert len(m) == 500 and m[0].answer == r"\left( 3, \frac{\pi}{2} \right)"
    sub = load_questions("math500", preset="research_math500", data_dir=str(shared_datasets))
    assert len(sub) == 100 and [q.index for q in sub] == list(range(100))
    assert len(load_questions("aime24", split="all", preset="research_aime24", data_dir=str(shared_datasets))) == 15
    assert len(load_questions("olympiadbench", split="all", data_dir=str(shared_datasets))) == 509
    g = load_questions("gsm8k", data_dir=str(shared_datasets), limit=3)
    assert g[0].answer == "18"


def test_bad_dataset_row_names_file_and_line(tmp_path):
    (tmp_path / "math500.jsonl").write_text(json.dumps({"problem": "1+1", "answer": "2"}) + "\n"
                                             + json.dumps({"problem": "2+2"}) + "\n")
    with pytest.raises(DatasetError, match=r"math500.jsonl:2: row has no 'answer'"):
        load_questions("math500", source="local", data_dir=str(tmp_path))


def test_gpqa_choices_shuffled_with_seed():
    """GPQA rows as the hub gives them: the correct choice lands at varying letters,
    deterministically for a seed, and the gold letter points at it."""
    from atts.tasks.datasets import DATASETS, _normalise

    rows = [{"Question": f"q{i}", "Correct Answer": f"right{i}", "Incorrect Answer 1": "w1",
             "Incorrect Answer 2": "w2", "Incorrect Answer 3": "w3", "Record ID": f"r{i}"} for i in range(40)]
    qs = _normalise(DATASETS["gpqa"], rows, seed=7)
    assert {q.answer for q in qs} == set("ABCD")
    assert all(q.choices["ABCD".index(q.answer)] == f"right{i}" for i, q in enumerate(qs))
    assert [q.answer for q in qs] == [q.answer for q in _normalise(DATASETS["gpqa"], rows, seed=7)]
    assert [q.answer for q in qs] != [q.answer for q in _normalise(DATASETS["gpqa"], rows, seed=8)]
    from atts.tasks.prompts import user_text
    assert "B) " in user_text(qs[0]) and qs[0].kind == "mc"
