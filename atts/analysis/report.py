"""``atts report RUN_DIR [RUN_DIR ...] [--output DIR] [--legacy GRADE.json ...]``
(= ``python -m atts.report``).

Reads finished runs (manifest, sample records, summary, calibration file, and any LLM
re-extractions or judge verdicts stored beside them) and writes, to ``--output``
(default ``RUN_DIR/report`` for one run, ``<common parent>/report`` for several):

- ``report.md`` and ``report.html`` (the same content; the HTML embeds the plots);
- ``calibration_ppl_<run>.png``: the calibration PPLs and the takeover threshold(s), with
  the PPLs of the draft chunks judged during evaluation overlaid;
- ``takeover_by_turn.png``: the observed takeover rate by turn with its clustered 95%
  interval (summary.json's cluster bootstrap over questions), against alpha;
- ``pareto.png`` (several runs): accuracy against median sample latency;
- ``timeline_<run>.png``: a Gantt chart of a few samples' requests over wall time (queue
  wait hatched, service solid), which shows the samples running concurrently;
- ``tokens.png``: tokens by role (draft generated, target generated, target scored).

Accuracy is graded again here (`atts.compute_accuracy`) for every answer field a run has
(``answer``: our extraction; ``llm`` etc.: LLM re-extractions), and the judge's pass@k
(`atts.judge`) is shown beside where ``judge_<field>.json`` exists. ``--legacy`` adds results
graded by ``atts grade`` (e.g. the research code's runs) to the accuracy table.
"""

from __future__ import annotations

import base64
import html
import importlib
import io
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from atts.analysis import figures
from atts.analysis.grade import compute
from atts.errors import CalibrationError, ReportError, UserError, run_guarded
from atts.method.conformal import CalibrationFile, key_turn, turn_key
from atts.runtime.store import RunStore, atomic_write_text
from atts.analysis.render import num, rate_ci, with_ci
from atts.records import STATUSES

FLOOR = 1e-6  # PPL - 1 below this is drawn at it (log axis)
ROLE_COLOURS = {("draft", "generate"): "#4C72B0", ("target", "score"): "#DD8452", ("target", "generate"): "#C44E52"}
ROLE_LABELS = {("draft", "generate"): "draft generate", ("target", "score"): "target score",
               ("target", "generate"): "target generate"}


@dataclass
class Run:
    dir: Path
    label: str
    manifest: dict
    summary: dict
    records: list[dict]
    calibration: object | None            # atts.conformal.CalibrationFile
    calibration_note: str | None
    grades: dict | None = None            # atts.compute_accuracy result
    judges: list = field(default_factory=list)  # judge_<field>.json files (atts.judge)

    @property
    def policy(self) -> str:
        return self.summary.get("policy") or (self.manifest.get("config") or {}).get("policy", {}).get("name", "?")

    @property
    def alpha(self) -> float | None:
        return self.summary.get("alpha")


# ---------------------------------------------------------------- loading

def load_run(d: Path) -> Run:
    if not (d / "manifest.json").is_file():
        raise ReportError(f"{d}: not an atts run directory (no manifest.json)")
    store = RunStore(d)
    manifest = store.read("manifest.json")
    if not (d / "summary.json").is_file():
        raise ReportError(f"{d}: no summary.json (the run has not finished once; rerun it to resume)")
    summary = store.read("summary.json")
    records = [r for r in store.completed().values() if r.get("status") in STATUSES]
    cal, note = _load_calibration(manifest)
    judges = [json.loads(p.read_text()) for p in sorted(d.glob("judge_*.json"))]
    return Run(d, d.name, manifest, summary, records, cal, note, judges=judges)


def _load_calibration(manifest: dict):
    info = manifest.get("calibration")
    if not info:
        return None, None
    try:
        cal = CalibrationFile.load(info["path"])
    except CalibrationError as e:
        return None, f"calibration file not readable ({e}); histogram left out"
    if info.get("hash") and cal.hash != info["hash"]:
        return None, f"calibration file {info['path']} changed since the run (hash {cal.hash} != {info['hash']}); histogram left out"
    return cal, None


def unique_labels(runs: list[Run]) -> None:
    """Label runs by policy; add the directory name where two share a policy."""
    policies = [r.policy for r in runs]
    for r in runs:
        r.label = r.policy if policies.count(r.policy) == 1 else f"{r.policy} ({r.dir.name})"


def slug(s: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in s)


# ---------------------------------------------------------------- data for the plots

def eval_ppls_by_turn(records: list[dict]) -> dict[int, list[float]]:
    """PPL of every draft chunk judged at its turn's first attempt."""
    out: dict[int, list[float]] = {}
    for r in records:
        for s in r["steps"]:
            if s.get("role") == "draft" and s.get("attempt", 0) == 0 and s.get("ppl") is not None:
                out.setdefault(int(s["turn"]), []).append(float(s["ppl"]))
    return out


def thresholds(cal, alpha: float) -> dict[str, float]:
    """Group -> q_hat (take over iff PPL > q_hat), from the calibration at level alpha."""
    gate = cal.gate(alpha)
    return {k: c.quantile for k, c in gate.groups.items() if math.isfinite(c.quantile)}


def timeline_samples(records: list[dict], n: int) -> list[dict]:
    """A few samples for the Gantt chart: among the 4n that started first, those with a
    target takeover first (up to half), then the earliest; shown in start order."""
    recs = sorted((r for r in records if r["steps"]), key=lambda r: r["started"])[: 4 * n]
    with_target = [r for r in recs if any(q["kind"] == "generate" and q["role"] == "target"
                                          for s in r["steps"] for q in s["requests"])]
    chosen = with_target[: n // 2]
    chosen += [r for r in recs if r not in chosen][: n - len(chosen)]
    return sorted(chosen, key=lambda r: r["started"])


# ---------------------------------------------------------------- plots

def _plt():
    """pyplot's `subplots` without pyplot (`atts.analysis.figures`): a notebook's backend
    and figures are left alone."""
    return figures


def _save(fig, path: Path) -> Path:
    """PNG with a 256-colour palette: plots have few colours, and the file is a third
    of the size (reports are committed and embedded in HTML)."""
    from PIL import Image  # deferred: Pillow, only to shrink a drawn image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    buf.seek(0)
    img = Image.open(buf).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format="PNG", optimize=True)
    os.replace(tmp, path)
    return path


def plot_calibration(run: Run, path: Path, max_panels: int = 6) -> Path:
    """Histogram of calibration PPLs with the threshold, per calibration group shown
    (per_turn: one panel per turn; marginal: one; per_question: all pooled, with the
    median of the per-question thresholds), and the evaluation PPLs of the same turn."""
    plt = _plt()
    cal, alpha = run.calibration, run.alpha
    th = thresholds(cal, alpha)
    ev = eval_ppls_by_turn(run.records)
    if cal.grouping == "per_turn":
        turns = sorted(key_turn(k) for k in cal.scores)[:max_panels]
        last = max(key_turn(k) for k in cal.scores)
        panels = []
        for t in turns:
            # later evaluated turns than calibrated use the last group's threshold (which pools their
            # calibration scores: atts.commands.calibrate.TurnGroups)
            evs = [p for et, ps in ev.items() if et == t or (t == last and et > last) for p in ps]
            title = f"turn {t}" + ("+" if t == last and any(et > last for et in ev) else "")
            panels.append((title, cal.scores[turn_key(t)], th.get(turn_key(t)), evs))
    elif cal.grouping == "marginal":
        panels = [("all turns", cal.scores["all"], th.get("all"), [p for ps in ev.values() for p in ps])]
    else:
        pooled = [s for v in cal.scores.values() for s in v]
        med = statistics.median(th.values()) if th else None
        panels = [("all questions pooled; line: median of the per-question thresholds", pooled, med,
                   [p for ps in ev.values() for p in ps])]
    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    size = (4.2 * cols, 3.2 * rows) if len(panels) > 1 else (7.5, 4.5)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    import numpy as np  # deferred: numpy, only for the plots

    # x = PPL - 1 on a log scale: chunks the target finds near-certain sit at PPL ~ 1 and
    # the threshold can be 1.00001, invisible on a linear PPL axis
    excess = lambda xs: np.maximum(np.asarray(xs, dtype=float) - 1.0, FLOOR)  # noqa: E731
    for ax, (title, scores, q, evs) in zip(axes.flat, panels):
        allv = np.log10(excess(list(scores) + list(evs)))
        bins = np.logspace(allv.min(), allv.max() + 1e-9, 30)
        ax.hist(excess(scores), bins=bins, alpha=0.55, color="#4C72B0", label=f"calibration (n={len(scores)})")
        if evs:
            ax.hist(excess(evs), bins=bins, histtype="step", linewidth=1.8, color="#C44E52",
                    label=f"evaluation (n={len(evs)})", weights=np.full(len(evs), len(scores) / len(evs)))
        if q is not None:
            ax.axvline(max(q - 1.0, FLOOR), color="black", linestyle="--", linewidth=1.3,
                       label=f"threshold PPL {q:.6g}")
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("PPL - 1 of the draft chunk (log scale)")
        ax.set_ylabel("chunks (evaluation rescaled to n)")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{run.label}: calibration PPLs ({cal.grouping}, alpha={alpha}); take over iff PPL > threshold",
                 fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def plot_takeover_by_turn(runs: list[Run], path: Path) -> Path | None:
    plt = _plt()
    shown = [r for r in runs if r.summary.get("takeover_rate_by_turn")]
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    alphas = set()
    for i, r in enumerate(shown):
        rows = r.summary["takeover_rate_by_turn"]
        t = [x["turn"] + 0.08 * i for x in rows]
        rate = [x["rate"] for x in rows]
        ax.fill_between(t, [x["low"] for x in rows], [x["high"] for x in rows], alpha=0.2, step=None)
        kind = "cluster-bootstrap" if any(x.get("interval") == "cluster_bootstrap" for x in rows) else "Wilson"
        ax.plot(t, rate, marker="o", label=f"{r.label} (95% {kind} band)")  # summaries before issue 13: Wilson
        for x, tt in zip(rows, t):
            ax.annotate(f"n={x['n']}", (tt, x["rate"]), textcoords="offset points", xytext=(0, 7), ha="center",
                        fontsize=7)
        if r.alpha is not None:
            alphas.add(r.alpha)
    for a in sorted(alphas):
        ax.axhline(a, color="black", linestyle="--", linewidth=1.2, label=f"alpha = {a}")
    ax.set_xlabel("turn")
    from matplotlib.ticker import MaxNLocator  # deferred: matplotlib is heavy and only needed to draw

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("takeover rate (first attempt)")
    ax.set_ylim(0, 1.05)
    ax.set_title("Takeover rate by turn against alpha")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_pareto(points: list[tuple[str, float, float]], path: Path) -> Path | None:
    """Accuracy (pass@1) against median latency per sample; the Pareto front joined."""
    if len(points) < 2:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, lat, acc in points:
        ax.scatter(lat, acc, s=50, zorder=3)
        ax.annotate(label, (lat, acc), textcoords="offset points", xytext=(6, 4), fontsize=9)
    front, best = [], -1.0
    for label, lat, acc in sorted(points, key=lambda p: (p[1], -p[2])):
        if acc > best:
            front.append((lat, acc))
            best = acc
    ax.plot([p[0] for p in front], [p[1] for p in front], color="grey", linestyle=":", zorder=2,
            label="Pareto front")
    ax.set_xlabel("median latency per sample (s)")
    ax.set_ylabel("pass@1")
    ax.set_title("Accuracy against latency")
    ax.margins(0.2)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_timeline(run: Run, path: Path, n: int = 6) -> Path | None:
    """Gantt chart: one row per sample; each request a bar from its submission (queue
    wait hatched, then service) coloured by role and kind; x = seconds since the first
    shown sample started."""
    recs = timeline_samples(run.records, n)
    if not recs:
        return None
    plt = _plt()
    from matplotlib.patches import Patch  # deferred: matplotlib is heavy and only needed to draw

    t0 = min(r["started"] for r in recs)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(recs) + 1.6))
    for row, r in enumerate(recs):
        for s in r["steps"]:
            for q in s["requests"]:
                key = (q["role"], q["kind"])
                c = ROLE_COLOURS.get(key, "grey")
                start = q["submitted"] - t0
                if q.get("queue_s", 0) > 0:
                    ax.barh(row, q["queue_s"], left=start, height=0.6, color="white", edgecolor=c, hatch="///",
                            linewidth=0.5)
                ax.barh(row, q["service_s"], left=start + q.get("queue_s", 0), height=0.6, color=c,
                        edgecolor="black", linewidth=0.3, alpha=0.9 if s.get("kept", True) or key[1] == "score" else 0.45)
    ax.set_yticks(range(len(recs)))
    ax.set_yticklabels([f"{r['key']} ({r['turns']} turns)" for r in recs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(left=0)
    ax.set_xlabel("wall time since the first shown sample started (s); pale draft bars: chunks not kept")
    ax.set_title(f"{run.label}: requests of {len(recs)} samples over wall time")
    handles = [Patch(color=c, label=ROLE_LABELS[k]) for k, c in ROLE_COLOURS.items()]
    handles.append(Patch(facecolor="white", edgecolor="grey", hatch="///", label="waiting for a slot"))
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18 - 0.1 / len(recs) ** 0.5),
              ncol=4, frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def plot_tokens(runs: list[Run], path: Path) -> Path:
    plt = _plt()
    import numpy as np  # deferred: numpy, only for the plots

    cats = [("draft generated", lambda t: t["draft"]["generated"], "#4C72B0"),
            ("target generated", lambda t: t["target"]["generated"], "#C44E52"),
            ("target scored", lambda t: t["target"]["scored"], "#DD8452")]
    if any(r.summary["tokens"]["draft"].get("wasted") for r in runs):  # pipelined policies
        cats.insert(1, ("draft wasted (pipelining)", lambda t: t["draft"].get("wasted", 0), "#A6BDDB"))
    x = np.arange(len(runs))
    w = 0.8 / len(cats)
    fig, ax = plt.subplots(figsize=(max(5, 1.8 * len(runs) + 2), 3.8))
    for i, (name, get, c) in enumerate(cats):
        vals = [get(r.summary["tokens"]) / max(1, r.summary["n_samples_completed"]) for r in runs]
        bars = ax.bar(x + (i - (len(cats) - 1) / 2) * w, vals, w, label=name, color=c)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels([r.label for r in runs])
    ax.set_ylabel("tokens per sample")
    ax.set_title("Token split by role")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------- the document

@dataclass
class Doc:
    """Blocks rendered both to Markdown and to self-contained HTML."""

    blocks: list = field(default_factory=list)

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list]):
        self.blocks.append(("table", header, rows))

    def img(self, path: Path, alt: str):
        self.blocks.append(("img", path, alt))

    def markdown(self) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "table":
                out.append("| " + " | ".join(b[1]) + " |\n|" + "---|" * len(b[1]))
                out[-1] += "".join("\n| " + " | ".join(_cell(c) for c in row) + " |" for row in b[2])
            elif b[0] == "img":
                out.append(f"![{b[2]}]({b[1].name})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
               "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
               "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;"
               "text-align:right}th{background:#f0f0f0}img{max-width:100%}code{background:#f4f4f4}"
               "</style></head><body>"]
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h{b[1]}>{html.escape(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                out.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "table":
                out.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in b[1]) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>" for row in b[2]]
                out.append("</table>")
            elif b[0] == "img":
                data = base64.b64encode(b[1].read_bytes()).decode()
                out.append(f"<p><img alt='{html.escape(b[2])}' src='data:image/png;base64,{data}'></p>")
        return "\n".join(out) + "</body></html>\n"


def _inline(text: str) -> str:
    """Markdown `code` spans to <code>; everything else escaped."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _cell(v) -> str:
    return num(v, missing="–")


def _ci(rate: dict) -> str:
    return rate_ci(rate, missing="–")


def _metric_ci(summary: dict, metric: str) -> str:
    """``value [low, high]`` from summary.json's ``<metric>`` and ``<metric>_ci`` (the
    value alone in a summary written before the intervals)."""
    return with_ci(summary.get(metric), summary.get(f"{metric}_ci"), missing="–")


def accuracy_rows(runs: list[Run], legacy: list[dict]) -> tuple[list[str], list[list]]:
    header = ["run", "answer field", "grader", "samples", "pass@1", "maj@k", "pass@k", "no answer / unclear"]
    rows = []
    for r in runs:
        g = r.grades
        for f, m in (g or {}).get("fields", {}).items():
            if f == "ours":  # the same extraction as `answer`, redone: shown only where it differs
                if m["n_verdicts_differ"] == 0:
                    continue
            rows.append([r.label, f, "math-verify", m["n_samples"], m["pass@1"], m["maj@k"], m["pass@k"],
                         m["n_no_answer"]])
        for jd in r.judges:
            j = judge_metrics(jd)
            rows.append([r.label, jd.get("answer_field", "answer"), f"LLM judge ({', '.join(j['models'])})",
                         j["n_samples"], None, None, j["pass@k"], f"{j['unclear']} unclear verdicts"])
    for lg in legacy:
        name = lg.get("label") or Path(lg["source"]).name
        for f, m in lg["fields"].items():
            rows.append([f"{name} (legacy)", f, "math-verify", m["n_samples"], m["pass@1"], m["maj@k"], m["pass@k"],
                         m["n_no_answer"]])
    return header, rows


def judge_metrics(j: dict) -> dict:
    """pass@k over the questions the judge gave a yes/no verdict on; `unclear`: replies
    that were neither (or failed), left out of pass@k."""
    qs = list(j.get("questions", {}).values())
    done = [q for q in qs if q.get("verdict") is not None]
    return {"pass@k": sum(bool(q["verdict"]) for q in done) / len(done) if done else None,
            "n_questions": len(done), "n_samples": sum(len(q.get("answers", [])) for q in qs),
            "models": sorted({str(q.get("model")) for q in qs}), "unclear": len(qs) - len(done)}


def summary_rows(runs: list[Run]) -> tuple[list[str], list[list]]:
    header = ["run", "dataset", "questions x K", "completed", "failed", "pass@1 [95%]", "maj@k [95%]", "pass@k [95%]", "alpha",
              "takeover rate [95%]", "target chunk share", "latency median (s)", "latency p90 (s)", "wall (s)",
              "samples/s"]
    rows = []
    for r in runs:
        s = r.summary
        rows.append([r.label, s.get("dataset"), f"{s.get('n_questions')} x {s.get('samples_per_question')}",
                     s.get("n_samples_completed"), s.get("n_failed"), *(_metric_ci(s, m) for m in ("pass@1", "maj@k", "pass@k")),
                     s.get("alpha"), _ci(s.get("takeover_rate")), s.get("target_chunk_share"),
                     s.get("latency_median"), s.get("latency_p90"), s.get("wall_seconds"),
                     s.get("samples_per_second")])
    return header, rows


def build(run_dirs: list[Path], out: Path, *, legacy_files: list[Path] = (), timeline_samples_n: int = 6,
          grade: bool = True) -> Path:
    runs = [load_run(Path(d)) for d in run_dirs]
    unique_labels(runs)
    legacy = []
    for f in legacy_files:
        try:
            legacy.append(json.loads(Path(f).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ReportError(f"{f}: not an `atts grade` output ({e})") from None
    out.mkdir(parents=True, exist_ok=True)
    if grade:
        for r in runs:
            r.grades = compute(r.dir)
    doc = Doc()
    doc.h(1, "atts report")
    doc.p(f"Runs: {', '.join(f'`{r.label}`' for r in runs)}. Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")
    doc.h(2, "Summary")
    doc.table(*summary_rows(runs))
    doc.p("pass@1: mean correctness over samples; maj@k: the most common answer per question; pass@k: any sample "
          "per question. Takeover rate: share of draft chunks (first attempt of a turn) the target took over. "
          "[95%]: a cluster bootstrap over questions (summary.json `<metric>_ci`; Wilson's interval only where "
          "fewer than two questions made takeover decisions). Latency: wall time of one sample, submission of its first request to its "
          "answer.")
    doc.h(2, "Accuracy by answer field and grader")
    doc.table(*accuracy_rows(runs, legacy))
    doc.p("`answer`: our extraction (last-paragraph `\\boxed{}`) graded by math-verify; other fields are answers "
          "re-extracted by an LLM (`python -m atts.reextract`), graded by the same grader. An LLM judge row gives "
          "the judge's pass@k (any of a question's K answers matches the gold answer, as the research code measured "
          "it). Legacy rows are results graded by `atts grade`.")
    pts = [(r.label, r.summary["latency_median"], r.summary["pass@1"]) for r in runs
           if r.summary.get("latency_median") is not None and r.summary.get("pass@1") is not None]
    p = plot_pareto(pts, out / "pareto.png")
    if p:
        doc.h(2, "Accuracy against latency")
        doc.img(p, "pass@1 against median latency per sample")
        doc.p("Runs measured on the same machine and servers are comparable; timings on a shared machine include "
              "the other load on it.")
    p = plot_takeover_by_turn(runs, out / "takeover_by_turn.png")
    if p:
        doc.h(2, "Takeover rate by turn")
        doc.img(p, "takeover rate by turn with 95% band against alpha")
        for r in runs:
            if r.summary.get("takeover_rate_by_turn"):
                doc.table(["turn", "decisions", "takeovers", "rate", "95% low", "95% high", "interval"],
                          [[t["turn"], t["n"], t["k"], t["rate"], t["low"], t["high"], t.get("interval", "wilson")]
                           for t in r.summary["takeover_rate_by_turn"]])

    for r in runs:
        if r.calibration is not None and r.alpha is not None:
            try:
                thresholds(r.calibration, r.alpha)
            except CalibrationError as e:  # e.g. a per-turn calibration forced onto another alpha
                doc.p(f"{r.label}: calibration histogram left out ({e})")
                continue
            doc.h(2, f"Calibration PPLs: {r.label}")
            doc.img(plot_calibration(r, out / f"calibration_ppl_{slug(r.label)}.png"), "calibration PPL histogram")
            th = thresholds(r.calibration, r.alpha)
            if r.calibration.grouping != "per_question":
                doc.table(["group", "calibration n", "threshold (take over iff PPL >)"],
                          [[k, len(r.calibration.scores[k]), f"{v:.6g}"] for k, v in sorted(th.items(), key=_group_order)])
        elif r.calibration_note:
            doc.p(f"{r.label}: {r.calibration_note}")
    doc.h(2, "Timelines")
    for r in runs:
        p = plot_timeline(r, out / f"timeline_{slug(r.label)}.png", timeline_samples_n)
        if p:
            doc.img(p, f"request timeline of {r.label}")
    doc.h(2, "Tokens by role")
    doc.img(plot_tokens(runs, out / "tokens.png"), "tokens per sample by role")
    doc.table(["run", "draft generated", "draft wasted (pipelining)", "target generated", "target scored"],
              [[r.label, r.summary["tokens"]["draft"]["generated"], r.summary["tokens"]["draft"].get("wasted"),
                r.summary["tokens"]["target"]["generated"], r.summary["tokens"]["target"]["scored"]] for r in runs])
    doc.h(2, "Sources")
    doc.table(["run", "directory", "config", "calibration"],
              [[r.label, _rel(r.dir, out), r.manifest.get("config_path") and Path(r.manifest["config_path"]).name,
                (r.manifest.get("calibration") or {}).get("hash")] for r in runs])

    atomic_write_text(out / "report.md", doc.markdown())
    atomic_write_text(out / "report.html", doc.html("atts report"))
    for name in ("report.md", "report.html"):
        os.chmod(out / name, 0o644)  # readable like the PNGs (atomic writes create 0600 files)
    return out / "report.md"


def _group_order(item):
    k = item[0]
    return (0, key_turn(k)) if k.startswith("turn:") else (1, k)


def _rel(p: Path, base: Path) -> str:
    try:
        return os.path.relpath(p.resolve(), base.resolve())
    except ValueError:
        return str(p)


def default_output(run_dirs: list[Path]) -> Path:
    if len(run_dirs) == 1:
        return run_dirs[0] / "report"
    common = Path(os.path.commonpath([str(Path(d).resolve()) for d in run_dirs]))
    return common / "report"


def command(args) -> int:
    """``atts report`` with its parsed arguments (the parser is `atts.cli`'s): the exit status."""

    def body():
        dirs = [Path(d) for d in args.runs]
        out = Path(args.output) if args.output else default_output(dirs)
        try:
            md = build(dirs, out, legacy_files=args.legacy, timeline_samples_n=args.timeline_samples,
                       grade=not args.no_grade)
        except ReportError as e:
            raise UserError(str(e)) from None
        print(f"wrote {md} and {out / 'report.html'}")
        return 0

    return run_guarded(body)


if __name__ == "__main__":  # the parser lives in atts.cli (imported by name: cli imports this module)
    sys.exit(importlib.import_module("atts.cli").main(["report", *sys.argv[1:]]))
