"""``atts export`` (lm-eval and jsonl) and the optional W&B logging, on a run made with
fake engines (`atts.run` with ``roles``; no servers)."""

import json
import random
from pathlib import Path

import pytest

import atts
from atts.analysis.export import export
from atts.cli import main
from atts.runtime.runner import Role
from atts.testing.fakes import CountingEngine, FakePrompter

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / "configs" / "testbed.yaml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("export") / "run"
    rng = random.Random(0)
    roles = {r: Role(r, CountingEngine(r, rng), FakePrompter(), 0.8) for r in ("draft", "target")}
    atts.run(CFG, roles=roles, output_dir=d, limit=3, samples_per_question=2, policy="atts", progress=False,
             set={"policy.grouping": "marginal", "calibration.limit": 4})
    return d


def test_lm_eval_results_and_samples(run_dir, tmp_path, capsys):
    assert main(["export", str(run_dir), "--format", "lm-eval", "--output-dir", str(tmp_path / "o")]) == 0
    res_files = list((tmp_path / "o").glob("results_*.json"))
    sample_files = list((tmp_path / "o").glob("samples_atts_chain_test_*.jsonl"))
    assert len(res_files) == 1 and len(sample_files) == 1
    assert res_files[0].name[len("results_"):] == sample_files[0].name[len("samples_atts_chain_test_"):-1]
    res = json.loads(res_files[0].read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    m = res["results"]["atts_chain_test"]
    for name in ("pass@1", "maj@k", "pass@k", "takeover_rate"):
        assert f"{name},none" in m and f"{name}_stderr,none" in m, name
    assert m["pass@1,none"] == summary["pass@1"] and m["pass@1_stderr,none"] == summary["pass@1_stderr"]
    assert m["takeover_rate,none"] == summary["takeover_rate"]["rate"]
    assert res["configs"]["atts_chain_test"]["policy"]["name"] == "atts"
    assert res["versions_all"]["python"] and "git_hash" in res
    assert res["n-samples"]["atts_chain_test"] == {"original": 6, "effective": summary["n_samples_completed"]}
    lines = [json.loads(x) for x in sample_files[0].read_text().splitlines()]
    assert len(lines) == 6
    recs = {(r["question_index"], r["repeat"]): r for r in atts.load_run(run_dir).samples}
    for line in lines:
        rec = recs[(line["doc_id"], line["repeat"])]
        assert line["doc"]["problem"] == rec["question"] and line["target"] == rec["gold"]
        assert line["resps"] == [[rec["text"]]] and line["filtered_resps"] == [rec["answer"]]
        assert line["metrics"] == ["acc"] and line["acc"] == float(bool(rec["correct"]))
        assert len(line["doc_hash"]) == 64
    assert "wrote" in capsys.readouterr().out


def test_jsonl_flat_lines(run_dir, tmp_path):
    (path,) = export(run_dir, "jsonl", tmp_path)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(rows) == 6
    for r in rows:
        assert all(not isinstance(v, (dict, list)) for v in r.values()), r  # flat: scalars only
        assert r["dataset"] == "chain" and r["policy"] == "atts" and r["takeovers"] <= r["decisions"]
        assert {"key", "correct", "answer", "gold", "text", "tokens_draft_generated"} <= set(r)
    pd = pytest.importorskip("pandas")
    assert len(pd.read_json(path, lines=True)) == 6


def test_export_of_a_non_run_exits_2(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--format", "jsonl"]) == 2
    err = capsys.readouterr().err
    assert "not a finished atts run" in err and "Traceback" not in err


def test_wandb_offline(run_dir, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (the `tracking` extra, which scripts/install.sh leaves out)")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    rep = tmp_path / "rep"
    assert main(["report", str(run_dir), "--no-grade", "--output-dir", str(rep), "--wandb", "atts-test",
                 "--wandb-name", "unit", "--wandb-tags", "a,b"]) == 0
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs and any(p.suffix == ".wandb" for p in runs[0].iterdir())
    table = list(runs[0].glob("files/media/table/takeover_rate_by_turn_*.table.json"))  # per-turn rates
    assert table and json.loads(table[0].read_text())["columns"] == ["turn", "rate", "low", "high", "n"]


def test_wandb_missing_is_a_one_line_error(run_dir, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    assert main(["export", str(run_dir), "--format", "jsonl", "--wandb", "p"]) == 2
    assert "needs the wandb package" in capsys.readouterr().err


def test_report_leaves_the_plotting_backend_alone(run_dir, tmp_path):
    """A notebook's backend (here svg) and pyplot's figure list are untouched by a report."""
    matplotlib = pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        assert main(["report", str(run_dir), "--no-grade", "--output-dir", str(tmp_path / "rep")]) == 0
        assert matplotlib.get_backend() == "svg" and plt.get_fignums() == []
        assert list((tmp_path / "rep").glob("*.png"))
    finally:
        matplotlib.use(before)
