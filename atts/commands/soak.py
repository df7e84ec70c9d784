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

At real concurrency (issue 16): a round holds ``--round-questions`` x
``--samples-per-question`` samples in flight (default 128 x 4 = 512). When the soak
launched the servers itself, it ``kill -9``s the target server at 1/3 of the duration and
the draft at 2/3, and restarts each on the same port (the engines wait for it:
``on_server_down: wait``). It reports samples completed, failed, duplicated (a key
recorded twice) and lost (missing from a round that ran to its end; both must be 0),
retries, peak RSS and fds, the event loop's lag, and with ``--baseline`` the throughput
against a fault-free, kill-free phase of the same duration run first. The 10-minute
figures are in docs/reliability.md:

    scripts/soak.sh --duration 600 --baseline --output results/soak
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import psutil

from atts.commands.calibrate import calibrate_async
from atts.commands.evaluate import evaluate_async
from atts.config import load_config, with_overrides
from atts.errors import UserError, run_guarded
from atts.runtime.session import Session
from atts.runtime.store import atomic_write_json
from atts.serving.faults import FaultProxy
from atts.serving.sglang import start_server, stop_servers, wait_ready


class Monitor:
    """Samples this process's RSS and open file descriptors every ``period`` seconds."""

    def __init__(self, period: float = 1.0):
        import psutil  # deferred: only the soak samples memory

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
    done = failed = truncated = duplicated = 0
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
                duplicated += rec.get("key") in seen
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
            "samples_failed": failed, "samples_duplicated": duplicated, "failure_reasons": reasons, "integrity_problems": problems[:20],
            "n_integrity_problems": len(problems)}


class LoopLag:
    """How late the event loop wakes a 100 ms sleeper: the delay every request and sample
    step sees on top of its own work (a blocked loop stalls all 512 samples at once)."""

    def __init__(self, period: float = 0.1):
        self.period, self.lags = period, []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.period)
            self.lags.append(time.perf_counter() - t - self.period)

    def start(self) -> "LoopLag":
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> dict:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        lags = sorted(self.lags) or [0.0]
        q = lambda f: lags[min(len(lags) - 1, int(f * len(lags)))] * 1000  # noqa: E731 (ms)
        return {"loop_lag_p50_ms": q(0.5), "loop_lag_p99_ms": q(0.99), "loop_lag_max_ms": lags[-1] * 1000}


def _server_spec(cfg, role: str, url: str):
    port = int(url.rsplit(":", 1)[1])
    return dataclasses.replace(getattr(cfg, role).server_spec(role), port=port)


def kill_and_restart(cfg, role: str, url: str, out: Path, restarted: list) -> dict:
    """``kill -9`` the role's server process (the one the watchdog runs; its watchdog then
    stops the server's children and exits), start a new one on the same port, wait until it
    answers. Blocking: run in a thread. Returns what happened, with the downtime."""
    prev = restarted_for(restarted, role)  # a second kill of a role hits its restarted server
    rec = prev.record() if prev else json.loads((out / "servers.json").read_text())[role]
    top = psutil.Process(rec["pid"])
    server = (top.children() or [top])[0]  # the watchdog's child is the server
    t0 = time.monotonic()
    os.kill(server.pid, signal.SIGKILL)
    with contextlib.suppress(psutil.Error):
        top.wait(30)
    new = start_server(_server_spec(cfg, role, url), out / "logs" / f"restart-{role}-{len(restarted)}")
    restarted.append(new)
    wait_ready([new], cfg.server_start_timeout_s)
    return {"role": role, "killed_pid": server.pid, "new_pid": new.pid, "downtime_s": time.monotonic() - t0}


def restarted_for(restarted: list, role: str):
    return next((s for s in reversed(restarted) if s.spec.role == role), None)


async def run_phase(cfg, args, roles, out: Path, cal_path: Path, *, kills: list[tuple[float, str]], urls,
                    server_out: Path, restarted: list) -> dict:
    """Rounds of the evaluated split until ``args.duration`` is up, with ``kills`` (at
    fraction of the duration, role) done meanwhile. Returns the phase's figures."""
    rounds: list[Path] = []
    finished: dict[Path, int] = {}  # round -> samples it should hold (it ran to its end)
    killed: list[dict] = []
    lag = LoopLag().start()
    t0 = time.monotonic()
    deadline = t0 + args.duration

    async def killer():
        for frac, role in kills:
            await asyncio.sleep(max(0.0, t0 + frac * args.duration - time.monotonic()))
            killed.append(await asyncio.to_thread(kill_and_restart, cfg, role, urls[role][0], server_out, restarted))

    kill_task = asyncio.get_running_loop().create_task(killer())
    try:
        while time.monotonic() < deadline - 1:
            d = out / f"round-{len(rounds):03d}"
            rounds.append(d)
            rcfg = with_overrides(cfg, output_dir=str(d))
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    summ = await evaluate_async(rcfg, roles, calibration=cal_path, progress=False)
                finished[d] = summ["n_questions"] * cfg.samples_per_question
            except TimeoutError:
                break
    finally:
        wall = time.monotonic() - t0
        if not kill_task.done():
            kill_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await kill_task  # a kill already under way finishes its restart (in its thread)
        lag_report = await lag.stop()
    records = check_records(rounds)
    lost = sum(max(0, want - len(list((d / "samples").glob("*.json")))) for d, want in finished.items())
    return {"wall_s": wall, "rounds": len(rounds), "rounds_finished": len(finished), **records,
            "samples_lost": lost, "samples_duplicated": records["samples_duplicated"], "kills": killed,
            "samples_per_second": records["samples_completed"] / wall if wall > 0 else None, **lag_report}


async def soak_async(cfg, args, out: Path) -> dict:
    restarted: list = []
    try:
        async with Session(cfg, log_dir=out / "logs", servers_json=out / "servers.json") as session:
            return await _soak(cfg, args, out, session, restarted)
    finally:
        stop_servers(restarted)  # servers the soak restarted after its kills


async def _soak(cfg, args, out: Path, session, restarted: list) -> dict:
    urls = session.urls
    cal_path = Path(args.calibration) if args.calibration else out / "calibration.json"
    if not args.calibration:
        ccfg = with_overrides(cfg, sets=[f"calibration.limit={args.calibration_limit}"])
        cal = await calibrate_async(ccfg, session.roles, progress=False)
        cal.save(cal_path)
    await session.close(session.roles)
    launched = all(getattr(cfg, r).launch for r in urls)
    kills = [(1 / 3, "target"), (2 / 3, "draft")] if args.kills and launched else []
    report: dict = {"config": cfg.source_path, "policy": cfg.policy.name, "duration_s": args.duration,
                    "fault_rate": args.fault_rate, "max_concurrency": args.concurrency,
                    "samples_in_flight": args.round_questions * args.samples_per_question,
                    "kills_planned": [f"{r} at {f:.0%}" for f, r in kills]}
    if args.baseline:  # the same length, no faults, no kills: the throughput to compare with
        roles = session.roles_for(cfg)
        try:
            base = await run_phase(cfg, args, roles, out / "baseline", cal_path, kills=[], urls=urls,
                                   server_out=out, restarted=restarted)
        finally:
            await session.close(roles)
        report["baseline"] = base
    proxies = {r: [FaultProxy(u, args.fault_rate, seed=args.seed + 7 * i + (r == "target"), slow_s=args.slow_s)
                   for i, u in enumerate(urls[r])] for r in urls}
    for ps in proxies.values():
        for p in ps:
            p.start()
    roles = session.roles_for(cfg, {r: [p.url for p in ps] for r, ps in proxies.items()})
    mon = Monitor().start()
    try:
        phase = await run_phase(cfg, args, roles, out, cal_path, kills=kills, urls=urls, server_out=out,
                                restarted=restarted)
    finally:
        await session.close(roles)
        for ps in proxies.values():
            for p in ps:
                p.stop()
        mon.stop()
    counters = {r.name: dict(r.engine.counters) for r in roles.values()}
    injected = {r: {k: sum(p.counts[k] for p in ps) for k in sorted({k for p in ps for k in p.counts})}
                for r, ps in proxies.items()}
    report.update(phase)
    report.update({"retries": {r: c.get("retries", 0) for r, c in counters.items()},
                   "requests": {r: c.get("requests", 0) for r, c in counters.items()},
                   "engine_counters": counters, "injected": injected, **mon.report()})
    if args.baseline and report["baseline"]["samples_per_second"]:
        report["throughput_vs_fault_free"] = report["samples_per_second"] / report["baseline"]["samples_per_second"]
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
                 ("backoff_s", 0.1), ("on_server_down", "wait"), ("down_wait_s", 600))]
        sets += ["policy.grouping=marginal"] if args.policy == "atts" else []
        cfg = with_overrides(load_config(args.config), policy=args.policy, samples_per_question=args.samples_per_question,
                             limit=args.round_questions, output_dir=str(out), sets=sets + args.set)
        report = asyncio.run(soak_async(cfg, args, out))
        atomic_write_json(out / "soak.json", report)
        keys = ("wall_s", "samples_in_flight", "rounds", "samples_completed", "samples_failed", "samples_duplicated",
                "samples_lost", "retries", "injected", "kills", "peak_rss_mb", "rss_start_mb", "rss_end_mb",
                "peak_fds", "fds_start", "fds_end", "samples_per_second", "throughput_vs_fault_free",
                "loop_lag_p50_ms", "loop_lag_p99_ms", "loop_lag_max_ms", "n_integrity_problems")
        for k in keys:
            v = report.get(k)
            print(f"  {k:24s} {v:.2f}" if isinstance(v, float) else f"  {k:24s} {v}")
        print(f"wrote {out / 'soak.json'}")
        ok = (report["n_integrity_problems"] == 0 and report["samples_completed"] > 0
              and report["samples_duplicated"] == 0 and report["samples_lost"] == 0)
        return 0 if ok else 1

    return run_guarded(body)


if __name__ == "__main__":  # the parser lives in atts.cli (imported by name: cli imports this module)
    sys.exit(importlib.import_module("atts.cli").main(["soak", *sys.argv[1:]]))
