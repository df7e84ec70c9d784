"""Per-question paired comparison of two policies (issue 13 item 3).

Where request seeds are not honoured (SGLang on CPU; `atts.runtime.seed_support`), sample r of
a question under policy A and sample r under policy B are independent draws, not a
pair: pairing them per sample claims a correlation that is not there. The question is
the unit both policies share, so the pair is a question's accuracy under A and under B
(the share of its completed samples that are correct; a failed sample counts as
incorrect, as in `summary.json`):

- the mean paired difference B - A over questions, with a seeded paired bootstrap 95%
  interval (questions resampled with replacement, N_BOOT times);
- a two-sided exact sign test over the questions where the two differ (ties dropped).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict

N_BOOT = 2000


def per_question_accuracy(records: list[dict]) -> dict[str, float]:
    """question id -> share of its samples that are correct (failed = incorrect)."""
    n, c = defaultdict(int), defaultdict(int)
    for r in records:
        n[r["question_id"]] += 1
        c[r["question_id"]] += bool(r.get("correct"))
    return {q: c[q] / n[q] for q in n}


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial sign test p-value (p = 1/2) for ``wins`` against ``losses``."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n  # P(X <= k), X ~ Bin(n, 1/2)
    return min(1.0, 2 * tail)


def paired_by_question(records_a: list[dict], records_b: list[dict], *, seed: int = 0,
                       n_boot: int = N_BOOT) -> dict:
    """B minus A over the questions both ran."""
    a, b = per_question_accuracy(records_a), per_question_accuracy(records_b)
    qs = sorted(set(a) & set(b))
    d = [b[q] - a[q] for q in qs]
    if not d:
        return {"n_questions": 0, "mean_diff": None, "ci": None, "wins": 0, "losses": 0, "ties": 0, "sign_p": 1.0}
    rng = random.Random(seed)
    boots = sorted(sum(rng.choice(d) for _ in d) / len(d) for _ in range(n_boot))  # resample questions
    lo, hi = boots[int(0.025 * (n_boot - 1))], boots[int(math.ceil(0.975 * (n_boot - 1)))]
    wins, losses = sum(x > 0 for x in d), sum(x < 0 for x in d)
    return {"n_questions": len(d), "mean_diff": sum(d) / len(d), "ci": [lo, hi], "wins": wins, "losses": losses,
            "ties": len(d) - wins - losses, "sign_p": sign_test(wins, losses)}


def paired_markdown(ref: str, rows: list[tuple[str, dict]], seeds_note: str | None) -> str:
    """A Markdown section: each policy against ``ref``, paired per question."""
    lines = ["", f"Paired per question against {ref} (accuracy difference, 95% paired bootstrap; sign test)"
             + (f". Seeds not honoured: {seeds_note}; samples are not paired across policies." if seeds_note else "."),
             "", "| policy | questions | mean diff [95%] | better / worse / tied | sign test p |", "|---|---|---|---|---|"]
    for name, p in rows:
        if p["mean_diff"] is None:
            lines.append(f"| {name} | 0 | - | - | - |")
            continue
        lines.append(f"| {name} | {p['n_questions']} | {p['mean_diff']:+.3f} [{p['ci'][0]:+.3f}, {p['ci'][1]:+.3f}] | "
                     f"{p['wins']} / {p['losses']} / {p['ties']} | {p['sign_p']:.3g} |")
    return "\n".join(lines) + "\n"
