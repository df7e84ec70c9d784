"""The script and notebook API, re-exported by ``import atts``:

    run = atts.run("configs/testbed.yaml", limit=20, policy="draft_only")   # blocks
    run = await atts.arun("configs/testbed.yaml", limit=20)                 # in a notebook cell
    run = atts.load_run("results/testbed")
    run.summary["pass@1"], run.manifest["config"], run.samples[0]["answer"], run.to_pandas()

`run` is ``atts run`` (calibrate when the policy needs it and the calibration file is
missing, then evaluate, servers started once) as a function. It is safe inside a running
event loop (Jupyter's): `asyncio.run` refuses to start there, so `run` then runs the
work on its own loop in a worker thread and blocks until it is done. ``roles`` lets a
caller bring its own engines (tests pass `atts.testing.fakes` engines); engines bound to
the caller's loop (an httpx client made in a notebook cell) need `arun` instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from atts.analysis.export import flat_row
from atts.commands.calibrate import calibrate_async, describe, policy_params
from atts.commands.evaluate import evaluate_async, preflight
from atts.config import RunConfig, load_config, with_overrides
from atts.errors import UserError
from atts.method.policies import POLICIES
from atts.runtime.runner import Role
from atts.runtime.session import Session
from atts.runtime.store import RunStore

OVERRIDES = ("policy", "alpha", "samples_per_question", "limit", "output_dir", "calibration")


@dataclass
class Run:
    """A finished (or partly finished) run directory, read back."""
    path: Path
    manifest: dict
    summary: dict | None  # None while the run has not finished
    samples: list[dict] = field(default_factory=list)  # sample records, by key order

    def to_pandas(self):
        """One row per sample (`atts.analysis.export.flat_row`); needs pandas."""
        try:
            import pandas as pd  # optional, heavy: only for this method
        except ImportError:
            raise UserError("Run.to_pandas needs pandas (pip install pandas)") from None
        return pd.DataFrame([flat_row(r, self.manifest) for r in self.samples])

    def __repr__(self) -> str:
        s = self.summary or {}
        return (f"Run({str(self.path)!r}, policy={s.get('policy')}, dataset={s.get('dataset')}, "
                f"samples={len(self.samples)}, pass@1={s.get('pass@1')})")


def load_run(path: str | Path) -> Run:
    """Read a run directory: ``manifest.json``, ``summary.json`` (None if absent) and
    every ``samples/*.json``. A directory that is not a run is a UserError (exit 2)."""
    d = Path(path)
    try:
        manifest = json.loads((d / "manifest.json").read_text())
    except FileNotFoundError:
        raise UserError(f"{d}: not an atts run directory (no manifest.json)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{d / 'manifest.json'}: invalid JSON ({e.msg})") from None
    summary_path = d / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    samples = [rec for _, rec in sorted(RunStore(d).completed().items())]
    return Run(d, manifest, summary, samples)


def resolve_config(config: str | Path | RunConfig, overrides: dict) -> RunConfig:
    """A config path or `RunConfig`, with ``overrides``: the `with_overrides` flags
    (policy, alpha, samples_per_question, limit, output_dir, calibration) and ``set``, a
    ``{"dotted.key": value}`` dict or a list of ``"key=value"`` strings (as ``--set``)."""
    unknown = sorted(set(overrides) - set(OVERRIDES) - {"set"})
    if unknown:
        raise UserError(f"unknown override(s) {', '.join(unknown)}; known: {', '.join(OVERRIDES + ('set',))}")
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    sets = overrides.get("set") or []
    if isinstance(sets, dict):
        sets = [f"{k}={json.dumps(v)}" for k, v in sets.items()]  # JSON is YAML: --set parses the value as YAML
    flags = {k: (str(v) if k in ("output_dir", "calibration") and v is not None else v)
             for k, v in overrides.items() if k in OVERRIDES}
    return with_overrides(cfg, sets=list(sets), **flags)


async def run_config_async(cfg: RunConfig, *, roles: dict[str, Role] | None = None,
                           calibration: str | Path | None = None, recalibrate: bool = False, force: bool = False,
                           progress: bool = True, command: list[str] | None = None) -> dict:
    """``atts run`` on a resolved config: the summary dict. With ``roles``, no server is
    started or stopped (the caller owns the engines)."""
    cal_path = Path(calibration) if calibration else cfg.calibration_path
    calibrating = POLICIES[cfg.policy.name].needs_calibration and (recalibrate or not cal_path.exists())
    if not calibrating:
        preflight(cfg, cal_path, force)

    async def go(r: dict[str, Role]) -> dict:
        if calibrating:
            cal = await calibrate_async(cfg, r, progress=progress)
            cal.save(cal_path)
            print(describe(cal, policy_params(cfg).alpha), file=sys.stderr)
        return await evaluate_async(cfg, r, calibration=cal_path, force=force, progress=progress, command=command)

    if roles is not None:
        return await go(roles)
    async with Session(cfg) as session:
        return await go(session.roles)


async def arun(config: str | Path | RunConfig, *, roles: dict[str, Role] | None = None,
               calibration: str | Path | None = None, recalibrate: bool = False, force: bool = False,
               progress: bool = True, **overrides) -> Run:
    """``await atts.arun(config, limit=20)``: `run` on the caller's event loop."""
    cfg = resolve_config(config, overrides)
    await run_config_async(cfg, roles=roles, calibration=calibration, recalibrate=recalibrate, force=force,
                           progress=progress, command=["atts.arun", str(getattr(cfg, "source_path", ""))])
    return load_run(cfg.output_dir)


def run(config: str | Path | RunConfig, **kwargs) -> Run:
    """``atts.run(config, **overrides)``: run to the end and return the `Run`. Blocks,
    also when called inside a running event loop (see the module docs)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop in this thread: the plain path
        return asyncio.run(arun(config, **kwargs))
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="atts.run") as pool:
        return pool.submit(asyncio.run, arun(config, **kwargs)).result()
