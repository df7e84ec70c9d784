"""``python -m atts.soak`` (``scripts/soak.sh``): run the testbed at high concurrency
through the fault-injecting proxy (`atts.faults`) for a bounded time, and report what
a week-long run would need to know: samples completed (each recorded exactly once, as
valid JSON), failures, retries, injected faults, peak memory and open file descriptors
of the atts process (and whether they grew).

    python -m atts.soak --config configs/testbed.yaml --duration 600 --fault-rate 0.1 \
        --concurrency 64 --output results/soak

The servers are launched as the config says (``launch: true``) or reached at its
``urls`` (``--set``). A calibration is made first, without faults (marginal grouping:
one turn-0 pass over ``--calibration-limit`` questions), unless ``--calibration`` gives
one. Then the evaluated split runs in rounds (``OUTPUT/round-NNN``), each round every
sample of the first ``--round-questions`` questions, until ``--duration`` is up: the round in progress is cancelled,
its finished samples stay on disk. The proxy runs in a thread of this process, so the
memory and fd figures include it (its sockets are a few per in-flight request).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import sys
import threading
import time
from pathlib import Path

from atts.commands.calibrate import calibrate_async
from atts.commands.evaluate import evaluate_async
from atts.config import load_config, with_overrides
from atts.errors import UserError, run_guarded
from atts.runtime.session import Session
from atts.runtime.store import atomic_write_json
from atts.serving.faults import FaultProxy


class Monitor:
    """Samples this process's RSS and open file descriptors every ``period`` seconds."""

    def __init__(self, period: float = 1.0):
        import psutil

        self.proc = psutil.Process()
        self.period = period
        self.samples: list[tuple[float, int, int]] = []  # (t, rss bytes, fds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-monitor", daemon=True)

    def _take(self) -> None:
        self.samples.append((time.time(), self.proc.memory_info().rss, self.proc.num_fds()))

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self._take()

    def start(self) -> "Monitor":
        self._take()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling and take the last sample (after the run's connections are closed)."""
        self._stop.set()
        self._thread.join(5)
        self._take()

    def report(self) -> dict:
        rss = [s[1] for s in self.samples]
        fds = [s[2] for s in self.samples]
        q = max(1, len(self.samples) // 4)  # first and last quarter: growth, not one spike
        return {"peak_rss_mb": max(rss) / 2**20, "rss_start_mb": rss[0] / 2**20, "rss_end_mb": rss[-1] / 2**20,
                "rss_first_quarter_mean_mb": sum(rss[:q]) / q / 2**20,
                "rss_last_quarter_mean_mb": sum(rss[-q:]) / q / 2**20,
                "peak_fds": max(fds), "fds_start": fds[0], "fds_end": fds[-1], "monitor_samples": len(self.samples)}


def check_records(round_dirs: list[Path]) -> dict:
    """Every record file is valid JSON, named by its own key, unique per round; every
    decision rests on a finite PPL. Returns counts and the problems found."""
    problems: list[str] = []
    done = failed = truncated = 0
    reasons: dict[str, int] = {}
    for d in round_dirs:
        samples = d / "samples"
        if not samples.is_dir():
            continue
        seen = set()
        for p in sorted(samples.iterdir()):
            if p.suffix != ".json" or p.name.startswith("."):
                problems.append(f"stray file {p}")
                continue
            try:
                rec = json.loads(p.read_text())
            except ValueError:
                problems.append(f"invalid JSON {p}")
                continue
            if f"{rec.get('key')}.json" != p.name or rec["key"] in seen:
                problems.append(f"bad or duplicate key in {p}")
            seen.add(rec["key"])
            st = rec.get("status")
            done += st == "done"
            truncated += st == "truncated"
            if st == "failed":
                failed += 1
                reason = (rec.get("error") or "?").split(" from ")[0]
                reasons[reason] = reasons.get(reason, 0) + 1
            for s in rec.get("steps", []):
                if s.get("decision") and not (isinstance(s.get("ppl"), float) and math.isfinite(s["ppl"]) and s["ppl"] >= 1):
                    problems.append(f"decision without a valid ppl in {p}")
    return {"samples_completed": done + truncated, "samples_done": done, "samples_truncated": truncated,
            "samples_failed": failed, "failure_reasons": reasons, "integrity_problems": problems[:20],
            "n_integrity_problems": len(problems)}


async def soak_async(cfg, args, out: Path) -> dict:
    async with Session(cfg, log_dir=out / "logs", servers_json=out / "servers.json") as session:
        urls = session.urls
        cal_path = Path(args.calibration) if args.calibration else out / "calibration.json"
        if not args.calibration:
            ccfg = with_overrides(cfg, sets=[f"calibration.limit={args.calibration_limit}"])
            cal = await calibrate_async(ccfg, session.roles, progress=False)
            cal.save(cal_path)
        await session.close(session.roles)
        proxies = {r: [FaultProxy(u, args.fault_rate, seed=args.seed + 7 * i + (r == "target"), slow_s=args.slow_s)
                       for i, u in enumerate(urls[r])] for r in urls}
        for ps in proxies.values():
            for p in ps:
                p.start()
        roles = session.roles_for(cfg, {r: [p.url for p in ps] for r, ps in proxies.items()})
        rounds: list[Path] = []
        mon = Monitor().start()
        t0 = time.monotonic()
        deadline = t0 + args.duration
        try:
            while time.monotonic() < deadline - 1:
                d = out / f"round-{len(rounds):03d}"
                rounds.append(d)
                rcfg = with_overrides(cfg, output_dir=str(d))
                try:
                    async with asyncio.timeout(deadline - time.monotonic()):
                        await evaluate_async(rcfg, roles, calibration=cal_path, progress=False)
                except TimeoutError:
                    break
        finally:
            wall = time.monotonic() - t0
            await session.close(roles)
            for ps in proxies.values():
                for p in ps:
                    p.stop()
            mon.stop()
    counters = {r.name: dict(r.engine.counters) for r in roles.values()}
    injected = {r: {k: sum(p.counts[k] for p in ps) for k in sorted({k for p in ps for k in p.counts})}
                for r, ps in proxies.items()}
    report = {
        "config": cfg.source_path, "policy": cfg.policy.name, "duration_s": args.duration, "wall_s": wall,
        "fault_rate": args.fault_rate, "max_concurrency": args.concurrency, "rounds": len(rounds),
        **check_records(rounds),
        "retries": {r: c.get("retries", 0) for r, c in counters.items()},
        "requests": {r: c.get("requests", 0) for r, c in counters.items()},
        "engine_counters": counters, "injected": injected,
        **mon.report(),
    }
    report["samples_per_second"] = report["samples_completed"] / wall if wall > 0 else None
    return report


def command(args) -> int:
    """``atts soak`` with its parsed arguments (the parser is `atts.cli`'s): the exit status."""

    def body():
        if args.duration <= 0 or not 0 <= args.fault_rate <= 1 or args.concurrency <= 0:
            raise UserError("--duration and --concurrency must be > 0, --fault-rate in [0, 1]")
        if args.slow_s <= args.timeout:
            raise UserError("--slow-s must exceed --timeout (a slow fault is one the client times out on)")
        out = Path(args.output)
        sets = [f"{r}.{k}={v}" for r in ("draft", "target") for k, v in
                (("max_concurrency", args.concurrency), ("timeout_s", args.timeout), ("retries", args.retries),
                 ("backoff_s", 0.1))]
        sets += ["policy.grouping=marginal"] if args.policy == "atts" else []
        cfg = with_overrides(load_config(args.config), policy=args.policy, samples_per_question=args.samples_per_question,
                             limit=args.round_questions, output_dir=str(out), sets=sets + args.set)
        report = asyncio.run(soak_async(cfg, args, out))
        atomic_write_json(out / "soak.json", report)
        keys = ("wall_s", "rounds", "samples_completed", "samples_failed", "retries", "injected", "peak_rss_mb",
                "rss_start_mb", "rss_end_mb", "peak_fds", "fds_start", "fds_end", "samples_per_second",
                "n_integrity_problems")
        for k in keys:
            v = report[k]
            print(f"  {k:22s} {v:.1f}" if isinstance(v, float) else f"  {k:22s} {v}")
        print(f"wrote {out / 'soak.json'}")
        return 0 if report["n_integrity_problems"] == 0 and report["samples_completed"] > 0 else 1

    return run_guarded(body)


if __name__ == "__main__":  # the parser lives in atts.cli (imported by name: cli imports this module)
    sys.exit(importlib.import_module("atts.cli").main(["soak", *sys.argv[1:]]))
