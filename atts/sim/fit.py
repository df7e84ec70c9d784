"""Fitting hardware profiles.

- `calibrate_hbm`: the HBM efficiency (one value for both roles) at which a replay's wall
  time equals a recorded run's (secant steps on a monotone function). How
  ``configs/hardware/h100_r1llama8b_qwq32b.yaml`` was calibrated on the shared traces.
- `fit_linear_profile`: a ``kind: linear`` profile (e.g. the CPU testbed) from a
  testbed run's own records: every request records its queue and service time, prompt,
  cached and output tokens (``steps[].requests[]``, `atts.engines.RequestStats`). Per
  role, least squares of

      service_s = overhead + prefill_token * (prompt - cached) + per_token * output

  where per_token is the decode step time at the run's mean decode batch. With runs at
  two or more load levels, per_token = step + seq * batch is split into its two terms
  (batch estimated as the mean number of the role's generations in service, Little's law:
  sum of their service times / the run's wall); with one run, seq = 0 (stated).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np

from atts.sim.hardware import Hardware


def with_hbm_efficiency(hw: Hardware, e: float) -> Hardware:
    roles = copy.deepcopy(hw.roles)
    for d in roles.values():
        d.setdefault("efficiency", {})["hbm"] = round(float(e), 4)
    return dataclasses.replace(hw, roles=roles)


def calibrate_hbm(wall_of, real_wall: float, e0: float = 0.85, steps: int = 4, tol: float = 0.002) -> list[tuple]:
    """Secant iterations on e -> wall_of(e) - real_wall; returns [(e, wall), ...]."""
    pts = [(e0, wall_of(e0))]
    e1 = min(1.0, max(0.2, e0 * pts[0][1] / real_wall))  # wall ~ 1/e for a memory-bound run
    pts.append((e1, wall_of(e1)))
    for _ in range(steps - 2):
        (ea, wa), (eb, wb) = pts[-2], pts[-1]
        if abs(wb - real_wall) / real_wall < tol or wb == wa:
            break
        e = min(1.0, max(0.2, eb + (real_wall - wb) * (eb - ea) / (wb - wa)))
        pts.append((e, wall_of(e)))
    return pts


def _requests(run_dir: Path) -> tuple[list[dict], float]:
    recs = [json.loads(p.read_text()) for p in sorted((run_dir / "samples").glob("q*-r*.json"))]
    try:
        wall = float(json.loads((run_dir / "summary.json").read_text())["wall_seconds"])
    except (OSError, KeyError, ValueError, TypeError):
        wall = None
    reqs = [r for rec in recs for s in rec.get("steps", ()) for r in s.get("requests", ())
            if r.get("kind") in ("generate", "score")]
    return reqs, wall


def fit_linear_profile(run_dirs: list[str | Path], kv_capacity_tokens: dict[str, int] | None = None,
                       uncertainty: float = 0.1) -> dict:
    """A ``kind: linear`` hardware profile (as a YAML-ready dict) from testbed runs."""
    rows: dict[str, list] = {"draft": [], "target": []}
    per_run: dict[str, list] = {"draft": [], "target": []}
    for d in run_dirs:
        reqs, wall = _requests(Path(d))
        for role in rows:
            rr = [r for r in reqs if r.get("role") == role]
            gens = [r for r in rr if r["kind"] == "generate" and r.get("output_tokens", 0) > 0]
            batch = sum(r["service_s"] for r in gens) / wall if wall else 1.0  # Little's law
            for r in rr:
                rows[role].append((1.0, r.get("prompt_tokens", 0) - r.get("cached_tokens", 0),
                                   r.get("output_tokens", 0), r["service_s"], batch))
            per_run[role].append(batch)
    prof = {"name": "cpu_testbed_fitted", "fitted_from": [str(d) for d in run_dirs], "roles": {}}
    for role, xs in rows.items():
        if not xs:
            continue
        a = np.array(xs, dtype=float)
        X, y = a[:, :3], a[:, 3]
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        overhead, prefill_tok, per_token = (max(0.0, float(c)) for c in coef)
        step, seq = per_token, 0.0
        if len(set(round(b, 1) for b in per_run[role])) >= 2:  # split per_token = step + seq * batch
            Xb = np.column_stack([a[:, 0], a[:, 1], a[:, 2], a[:, 2] * a[:, 4]])
            c2, *_ = np.linalg.lstsq(Xb, y, rcond=None)
            if c2[2] > 0 and c2[3] >= 0:
                overhead, prefill_tok, step, seq = (max(0.0, float(c)) for c in c2)
        resid = y - X @ np.array([overhead, prefill_tok, per_token])
        prof["roles"][role] = {
            "kind": "linear", "step_ms": 1e3 * step, "seq_ms": 1e3 * seq, "ctx_ms": 0.0,
            "prefill_token_ms": 1e3 * prefill_tok, "attn_ms": 0.0, "request_overhead_ms": 1e3 * overhead,
            "kv_capacity_tokens": int((kv_capacity_tokens or {}).get(role, 10**6)), "replicas": 1, "gpus": 1,
            "uncertainty": uncertainty, "fit": {"requests": len(xs), "mean_batch_per_run": per_run[role],
                                                "rmse_s": float(np.sqrt(np.mean(resid ** 2)))}}
    return prof
