"""Optional experiment tracking with Weights & Biases (``--wandb PROJECT`` on ``atts run``,
``atts evaluate``, ``atts report`` and ``atts export``).

`log_run` logs one finished run: the config (the manifest's), the summary's scalars
(pass@1, maj@k, pass@k with their stderr, takeover rate, latencies, tokens) to the run's
summary; the per-turn takeover rates as a table and a line series (``takeover/turn``
against ``turn``); and, when a report directory is given, ``report.html`` and its plots
as an artifact (type ``atts-report``). ``WANDB_MODE=offline`` writes it all under
``./wandb`` with no network (how the tests run it). wandb is not a dependency: without
it, ``--wandb`` is a one-line user error (exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path

from atts.errors import UserError


def _wandb():
    try:
        import wandb  # optional and heavy: imported only when --wandb is given
    except ImportError:
        raise UserError("--wandb needs the wandb package (pip install wandb)") from None
    return wandb


def scalars(summary: dict) -> dict:
    """The summary's numbers, flattened to ``a/b`` keys (W&B summary values)."""
    out: dict = {}

    def walk(prefix: str, v) -> None:
        if isinstance(v, bool) or v is None:
            return
        if isinstance(v, (int, float)):
            out[prefix] = v
        elif isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}/{k}" if prefix else str(k), x)

    for k, v in summary.items():
        if k != "takeover_rate_by_turn":
            walk(k, v)
    return out


def log_run(run_dir: str | Path, *, project: str, name: str | None = None, tags: list[str] | None = None,
            report_dir: str | Path | None = None, entity: str | None = None) -> str:
    """Log one finished run (see the module docs); returns the W&B run's id."""
    wandb = _wandb()
    d = Path(run_dir)
    try:
        manifest = json.loads((d / "manifest.json").read_text())
        summary = json.loads((d / "summary.json").read_text())
    except FileNotFoundError as e:
        raise UserError(f"{d}: not a finished atts run (no {Path(e.filename).name})") from None
    run = wandb.init(project=project, entity=entity, name=name or d.name, tags=list(tags or []),
                     config=manifest.get("config") or {}, job_type="atts-eval")
    try:
        run.summary.update(scalars(summary))
        by_turn = summary.get("takeover_rate_by_turn") or []
        table = wandb.Table(columns=["turn", "rate", "low", "high", "n"])
        for t in by_turn:
            table.add_data(t["turn"], t.get("rate"), t.get("low"), t.get("high"), t.get("n"))
            run.log({"turn": t["turn"], "takeover/turn": t.get("rate")})
        run.log({"takeover_rate_by_turn": table})
        if report_dir is not None and Path(report_dir).is_dir():
            art = wandb.Artifact(f"report-{d.name}", type="atts-report")
            art.add_dir(str(report_dir))
            run.log_artifact(art)
        return run.id
    finally:
        run.finish()


def log_from_args(args, run_dir: str | Path, report_dir: str | Path | None = None) -> None:
    """``--wandb PROJECT [--wandb-name N] [--wandb-tags a,b]`` of a command, if given."""
    if getattr(args, "wandb", None):
        tags = [t.strip() for t in (args.wandb_tags or "").split(",") if t.strip()]
        rid = log_run(run_dir, project=args.wandb, name=args.wandb_name, tags=tags, report_dir=report_dir)
        print(f"logged to W&B project {args.wandb} (run {rid})")


def check_available(args) -> None:
    """Fail before the work starts, not after, when --wandb is given without wandb."""
    if getattr(args, "wandb", None):
        _wandb()
