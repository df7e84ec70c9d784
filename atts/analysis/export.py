"""``atts export RUN_DIR --format lm-eval|jsonl [--output-dir DIR]``: a finished run in
the formats the ecosystem reads.

``lm-eval`` (lm-evaluation-harness's ``--output_path`` layout, so its tools and
leaderboards' loaders read it):

- ``results_<timestamp>.json``: ``results[<task>]`` holds every metric as
  ``"<metric>,none"`` with its ``"<metric>_stderr,none"`` (pass@1, maj@k, pass@k and the
  unbiased pass@j come with the run's clustered standard errors, `atts.runtime.summary`;
  the takeover rate with its own); ``configs[<task>]`` the run's config, ``versions``
  the package versions, ``git_hash`` the revision the run was made at, ``n-samples``.
- ``samples_<task>_<timestamp>.jsonl``: one line per sample (question x repeat):
  ``doc_id`` (question index), ``doc`` (problem, id, answer, choices), ``target`` (the
  gold answer), ``resps`` (``[[text]]``), ``filtered_resps`` (``[extracted answer]``),
  ``filter`` ("none"), ``metrics`` (the metric names) with their values beside
  (``"acc": 1.0``), and ``repeat``, ``doc_hash``, ``target_hash``.

The task name is ``atts_<dataset>_<split>``. ``jsonl`` writes ``samples.jsonl``: one
flat line per sample (`flat_row`), for pandas (``pd.read_json(p, lines=True)``) or
``datasets.load_dataset("json", data_files=p)``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

from atts.errors import UserError
from atts.runtime.store import RunStore, atomic_write_json, atomic_write_text

FORMATS = ("lm-eval", "jsonl")


def _read(run_dir: Path) -> tuple[dict, dict, list[dict]]:
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
        summary = json.loads((run_dir / "summary.json").read_text())
    except FileNotFoundError as e:
        raise UserError(f"{run_dir}: not a finished atts run (no {Path(e.filename).name})") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{run_dir}: invalid JSON in the run ({e.msg})") from None
    return manifest, summary, [rec for _, rec in sorted(RunStore(run_dir).completed().items())]


def takeovers(rec: dict) -> tuple[int, int]:
    """(calibrated decisions, takeovers) of one sample: first attempts of a turn, as
    `atts.runtime.summary.takeover_counts` counts them."""
    decided = [s for s in rec.get("steps", ()) if s.get("attempt") == 0 and s.get("decision")]
    return len(decided), sum(s["decision"] == "takeover" for s in decided)


def flat_row(rec: dict, manifest: dict) -> dict:
    """One sample as a flat dict of scalars (the jsonl export, `Run.to_pandas`)."""
    cfg = manifest.get("config") or {}
    ds = cfg.get("dataset") or {}
    n_dec, n_take = takeovers(rec)
    row = {
        "key": rec["key"], "question_index": rec["question_index"], "question_id": rec["question_id"],
        "repeat": rec["repeat"], "policy": rec.get("policy"), "dataset": ds.get("name"), "split": ds.get("split"),
        "status": rec.get("status"), "stop_reason": rec.get("stop_reason"), "error": rec.get("error"),
        "correct": rec.get("correct"), "answer": rec.get("answer"), "gold": rec.get("gold"), "kind": rec.get("kind"),
        "turns": rec.get("turns"), "decisions": n_dec, "takeovers": n_take, "latency_s": rec.get("latency_s"),
        "question": rec.get("question"), "text": rec.get("text"),
    }
    row |= {f"tokens_{k}": v for k, v in sorted((rec.get("tokens") or {}).items())}
    return row


def _metrics(summary: dict) -> dict:
    """``"<metric>,none"`` and ``"<metric>_stderr,none"``, lm-eval's key convention."""
    out = {}
    names = ["pass@1", "maj@k", "pass@k"] + sorted(k for k in summary if k.startswith("pass@") and k[5:].isdigit()
                                                   and k != "pass@1")
    for name in names:
        if isinstance(summary.get(name), (int, float)):
            out[f"{name},none"] = summary[name]
            out[f"{name}_stderr,none"] = summary.get(f"{name}_stderr")
    tr = summary.get("takeover_rate") or {}
    if tr.get("n"):
        out["takeover_rate,none"] = tr["rate"]
        out["takeover_rate_stderr,none"] = tr.get("stderr")
    return out


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def task_name(summary: dict) -> str:
    return f"atts_{summary.get('dataset')}_{summary.get('split')}"


def export_lm_eval(run_dir: Path, out: Path, now: datetime.datetime | None = None) -> tuple[Path, Path]:
    manifest, summary, records = _read(run_dir)
    now = now or datetime.datetime.now()
    stamp = now.strftime("%Y-%m-%dT%H-%M-%S.%f")  # lm-eval's file-name timestamp
    task = task_name(summary)
    git = manifest.get("git") or {}
    results = {
        "results": {task: {"alias": task, **_metrics(summary)}},
        "configs": {task: manifest.get("config")},
        "versions": {task: manifest.get("versions", {}).get("atts")},
        "n-shot": {task: 0},
        "higher_is_better": {task: {"pass@1": True, "maj@k": True, "pass@k": True, "takeover_rate": False}},
        "n-samples": {task: {"original": summary.get("n_samples_expected"),
                             "effective": summary.get("n_samples_completed")}},
        "config": {"model": "atts", "policy": summary.get("policy"), "alpha": summary.get("alpha"),
                   "samples_per_question": summary.get("samples_per_question"),
                   "model_args": {r: (manifest.get("config") or {}).get(r, {}).get("model") for r in ("draft", "target")}},
        "versions_all": manifest.get("versions"),
        "git_hash": git.get("revision"), "git_dirty": git.get("dirty"),
        "dataset_source": manifest.get("dataset_source"),
        "date": now.timestamp(), "task_hashes": {}, "model_source": "atts", "model_name": summary.get("policy"),
    }
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / f"results_{stamp}.json"
    atomic_write_json(res_path, results)
    lines = []
    for rec in records:
        doc = {"problem": rec.get("question"), "id": rec.get("question_id"), "answer": rec.get("gold")}
        if rec.get("choices"):
            doc["choices"] = rec["choices"]
        acc = float(bool(rec.get("correct")))  # a failed sample counts as incorrect, as in the summary
        lines.append(json.dumps({
            "doc_id": rec["question_index"], "repeat": rec["repeat"], "doc": doc, "target": rec.get("gold"),
            "arguments": [[rec.get("question")]], "resps": [[rec.get("text") or ""]],
            "filtered_resps": [rec.get("answer")], "filter": "none", "metrics": ["acc"], "acc": acc,
            "doc_hash": _sha(json.dumps(doc, sort_keys=True)), "target_hash": _sha(str(rec.get("gold"))),
        }, ensure_ascii=False))
    samples_path = out / f"samples_{task}_{stamp}.jsonl"
    atomic_write_text(samples_path, "".join(line + "\n" for line in lines))
    return res_path, samples_path


def export_jsonl(run_dir: Path, out: Path) -> Path:
    manifest, _, records = _read(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "samples.jsonl"
    atomic_write_text(path, "".join(json.dumps(flat_row(r, manifest), ensure_ascii=False) + "\n" for r in records))
    return path


def export(run_dir: str | Path, fmt: str, out: str | Path | None = None) -> list[Path]:
    """Write ``fmt`` of ``run_dir`` to ``out`` (default ``RUN_DIR/export``): the files written."""
    d = Path(run_dir)
    o = Path(out) if out else d / "export"
    if fmt == "lm-eval":
        return list(export_lm_eval(d, o))
    if fmt == "jsonl":
        return [export_jsonl(d, o)]
    raise UserError(f"--format: unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def command(args) -> int:
    """``atts export`` with its parsed arguments (the parser is `atts.cli`'s)."""
    for p in export(args.run_dir, args.format, args.output):
        print(f"wrote {p}")
    return 0
