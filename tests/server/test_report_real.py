"""`atts report` on real testbed runs (per-turn ATTS and draft_only on the same
questions): the Markdown and HTML documents, every plot, the comparison table. The pure
pieces are in tests/unit/test_report.py."""

import base64
import json

import pytest

from atts.commands.calibrate import calibrate_async
from atts.commands.evaluate import evaluate_async
from atts.runtime.session import run_with_roles
from conftest import ROOT

N_Q, K, ALPHA = 3, 2, 0.3


_with_roles = run_with_roles


@pytest.fixture(scope="module")
def runs(testbed, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    sets = [f"samples_per_question={K}", "calibration.limit=8", "calibration.min_per_turn=8", f"policy.alpha={ALPHA}"]
    cfg = testbed.config(tmp, sets=sets, limit=N_Q)
    cal = _with_roles(cfg, lambda roles: calibrate_async(cfg, roles, progress=False))
    cal.save(cfg.calibration_path)
    dirs = []
    for policy in ("atts", "draft_only"):
        c = testbed.config(tmp, sets=sets, limit=N_Q, policy=policy, output_dir=str(tmp / "runs" / policy))
        _with_roles(c, lambda roles: evaluate_async(c, roles, progress=False))
        dirs.append(tmp / "runs" / policy)
    return dirs


def _png_size(p):
    data = p.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", p
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_report_of_two_policies(runs, tmp_path):
    from atts.cli import main

    assert main(["report", *map(str, runs)]) == 0
    out = runs[0].parent / "report"  # default: next to the runs
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for name in ("pareto.png", "takeover_by_turn.png", "calibration_ppl_atts.png", "timeline_atts.png",
                 "timeline_draft_only.png", "tokens.png"):
        w, h = _png_size(out / name)
        assert 300 < w < 2000 and 200 < h < 1500, (name, w, h)
        assert f"]({name})" in md, name
        # the HTML embeds the same bytes
        assert base64.b64encode((out / name).read_bytes()).decode() in html, name
    assert html.count("data:image/png;base64,") == md.count("![")
    # the summary table: one row per run, its figures from summary.json
    for d in runs:
        s = json.loads((d / "summary.json").read_text())
        row = next(line for line in md.splitlines() if line.startswith(f"| {s['policy']} | chain |"))
        assert f"| {s['pass@1']:.3f} [" in row and f"{N_Q} x {K}" in row  # pass@1 with its clustered interval
    atts = json.loads((runs[0] / "summary.json").read_text())
    for t in atts["takeover_rate_by_turn"]:  # per-turn table with the Wilson interval
        assert f"| {t['turn']} | {t['n']} | {t['k']} | {t['rate']:.3f} | {t['low']:.3f} | {t['high']:.3f} |" in md
    assert "threshold (take over iff PPL >)" in md and "| turn:0 |" in md
    assert "/work/" not in md and str(ROOT) not in md  # no machine paths: directories are relative


def test_report_with_legacy_grades(runs, tmp_path):
    from atts.cli import main

    g = tmp_path / "grade.json"
    assert main(["grade", str(runs[1]), "--output", str(g)]) == 0
    assert main(["report", str(runs[0]), "--legacy", str(g), "--output", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| draft_only (legacy) | answer | math-verify |" in md
    assert not (tmp_path / "rep" / "pareto.png").exists()  # one run: no Pareto plot
