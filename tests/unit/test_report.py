"""`atts report`'s pure pieces (no server): user errors, the sample choice for the
timeline, Markdown/HTML rendering. Reports of real runs: tests/server/test_report_real.py."""

import re
import subprocess
import sys

from atts.analysis.report import Doc, timeline_samples
from conftest import ROOT


def test_report_user_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "atts.analysis.report", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "not an atts run directory" in r.stderr and "Traceback" not in r.stderr


def test_timeline_prefers_samples_with_takeovers():
    def rec(i, started, target):
        reqs = [{"kind": "generate", "role": "draft"}] + ([{"kind": "generate", "role": "target"}] if target else [])
        return {"key": f"s{i}", "started": started, "steps": [{"requests": reqs}]}

    recs = [rec(i, float(i), target=i in (5, 7)) for i in range(20)]
    chosen = timeline_samples(recs, 4)
    assert [r["key"] for r in chosen] == ["s0", "s1", "s5", "s7"]  # in start order, takeovers included


def test_doc_renders_markdown_tables_and_escapes_html():
    d = Doc()
    d.h(2, "T")
    d.table(["a", "b"], [[1, 0.5], [None, "<x>"]])
    d.p("use `atts report`")
    md = d.markdown()
    assert "## T" in md and "| 1 | 0.500 |" in md and "| – | <x> |" in md
    h = d.html("t")
    assert "&lt;x&gt;" in h and "<code>atts report</code>" in h and re.search(r"<th>a</th><th>b</th>", h)
