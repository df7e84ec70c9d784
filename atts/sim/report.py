"""simulate.json, simulate.md and simulate.png (each server's utilisation, decode batch
and KV occupancy over time)."""

from __future__ import annotations

from pathlib import Path

from atts.runtime.store import atomic_write_json, atomic_write_text


def write_outputs(out: Path, doc: dict, run: dict, plot: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if plot:
        doc["plot"] = "simulate.png" if write_plot(out / "simulate.png", run) else None
    atomic_write_json(out / "simulate.json", doc)
    atomic_write_text(out / "simulate.md", markdown(doc))


def _f(v, nd=2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def markdown(doc: dict) -> str:
    s, vr, sens = doc["schedule"], doc["vs_recorded"], doc.get("sensitivity") or {}
    L = [f"# atts simulate: {s['name']} on {doc['hardware']['name']}", ""]
    if doc.get("command"):
        L += [f"command: `{doc['command']}`", ""]
    t = doc["traces"]
    L += [f"traces: {t['form']} `{t['source']}`, {t['samples']} samples ({t['questions']} questions x "
          f"{t['samples_per_question']})", "",
          "| figure | nominal | slow (efficiency - uncertainty) | fast (+) |", "|---|---|---|---|"]
    for k, nd in (("wall_seconds", 1), ("samples_per_second", 4), ("latency_median", 2), ("latency_p90", 2)):
        L.append(f"| {k} | {_f(doc[k], nd)} | {_f(sens.get('slow', {}).get(k), nd)} | {_f(sens.get('fast', {}).get(k), nd)} |")
    L += [f"| output_tokens_per_second | {_f(doc['output_tokens_per_second'], 1)} | | |",
          f"| samples_per_second_per_gpu ({doc['gpus']} GPUs) | {_f(doc['samples_per_second_per_gpu'], 5)} | | |", "",
          "| server | busy s | utilisation | mean decode batch | mean KV occupancy (busy) | cache hit | retractions |",
          "|---|---|---|---|---|---|---|"]
    for name, st in doc["servers"].items():
        L.append(f"| {name} | {_f(st['busy_seconds'], 1)} | {_f(st['utilisation'], 3)} | {_f(st['mean_decode_batch'], 2)} | "
                 f"{_f(st['mean_kv_occupancy_busy'], 3)} | {_f(st['cache_hit_rate'], 3)} | {st['retractions']} |")
    L += ["", "Against the recorded run:", "",
          f"- decisions: {vr['decisions_agree']} of {vr['decisions_compared']} compared agree "
          f"({_f(vr['decision_agreement'], 4)}); recorded {vr['decisions_recorded']}, simulated {vr['decisions_simulated']}",
          f"- samples whose turn count differs from the trace: {vr['samples_with_other_turn_count']}",
          f"- per-sample duration correlation r = {_f(vr['duration_correlation_r'], 3)} over {vr['durations_compared']} samples",
          f"- real wall {_f(vr['real_wall_seconds'], 1)} s; simulated {_f(doc['wall_seconds'], 1)} s; error "
          f"{_f(100 * vr['wall_error'] if vr['wall_error'] is not None else None, 1)} %", "",
          "Assumptions:", ""]
    L += [f"- {a}" for a in doc["assumptions"]]
    L += ["", f"replay CPU: {_f(doc['replay_cpu_seconds'], 1)} s for {doc['requests']:,} requests"]
    if doc.get("plot"):
        L += ["", f"![utilisation]({doc['plot']})"]
    return "\n".join(L) + "\n"


def binned(timeline: list[tuple], wall: float, bins: int = 200) -> dict:
    """Per time bin: busy fraction, time-weighted decode batch, KV tokens used."""
    w = wall / bins if wall > 0 else 1.0
    busy, batch_t, dec_t, kv = [0.0] * bins, [0.0] * bins, [0.0] * bins, [0.0] * bins
    for start, dt, kind, n, used in timeline:
        a, end = start, start + dt
        while a < end - 1e-12:
            i = min(bins - 1, int(a / w))
            b = min(end, (i + 1) * w)
            if b <= a:  # float edge
                b = end
            part = b - a
            busy[i] += part
            kv[i] += used * part
            if kind == "decode":
                batch_t[i] += n * part
                dec_t[i] += part
            a = b
    return {"t": [(i + 0.5) * w for i in range(bins)], "util": [min(1.0, x / w) for x in busy],
            "batch": [batch_t[i] / dec_t[i] if dec_t[i] else 0.0 for i in range(bins)],
            "kv": [kv[i] / busy[i] if busy[i] else 0.0 for i in range(bins)]}


def write_plot(path: Path, run: dict) -> bool:
    try:
        import matplotlib  # heavy, optional: the figures do not need it

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    servers = [s for r in ("draft", "target") for s in run["servers"][r] if s.timeline]
    if not servers:
        return False
    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    for s in servers:
        b = binned(s.timeline, run["wall"])
        axes[0].plot(b["t"], b["util"], label=s.name)
        axes[1].plot(b["t"], b["batch"], label=s.name)
        axes[2].plot(b["t"], [x / s.cost.kv_capacity_tokens for x in b["kv"]], label=s.name)
    axes[0].set_ylabel("utilisation")
    axes[1].set_ylabel("mean decode batch")
    axes[2].set_ylabel("KV used (radix cache incl.)")
    axes[2].set_xlabel("virtual time (s)")
    axes[0].legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
