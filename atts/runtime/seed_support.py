"""Whether a run's per-request seeds are honoured by its engines (issue 13 item 3). Not to
be confused with `atts.seeds`, which derives the seeds themselves.

SGLang 0.5.23 reads ``sampling_seed`` only on a server started with
``--enable-deterministic-inference``; atts passes that flag on the GPU servers it
launches (`atts.serving.spec.ServerSpec.argv`). On CPU, SGLang refuses the flag with the
``torch_native`` attention backend, the only one that runs there
(reference/SGLANG_CPU.md: "The same sampling_seed did not reproduce samples"), so a
CPU run's samples are not reproducible and two policies' sample r of a question are not
paired draws. vLLM (the ``openai`` engine) honours a request's ``seed``. A server atts
did not launch is trusted only when its role's ``extra_args`` or the config say so: atts
cannot see its flags.

Where seeds are not honoured, `seed_support` says why; the manifest and summary record
it and `atts compare` pairs policies per question, not per sample."""

from __future__ import annotations

DETERMINISTIC_FLAG = "--enable-deterministic-inference"


def role_honours_seeds(m) -> tuple[bool, str]:
    """``m``: a role's `atts.config.ModelConfig`. (honoured, reason)."""
    if m.engine == "openai":
        return True, "OpenAI-compatible engine (vLLM): the request's `seed` is honoured"
    if m.launch and m.device == "cuda":
        return True, f"SGLang on GPU, launched with {DETERMINISTIC_FLAG}"
    if m.launch:
        return False, (f"SGLang on CPU: {DETERMINISTIC_FLAG} is refused with the torch_native attention backend, "
                       "and sampling_seed is ignored without it")
    if DETERMINISTIC_FLAG in m.extra_args:
        return True, f"SGLang server declared with {DETERMINISTIC_FLAG} in extra_args"
    return False, (f"SGLang server not launched by atts: sampling_seed is honoured only with {DETERMINISTIC_FLAG}, "
                   "which atts cannot confirm (declare it in the role's extra_args)")


def seed_support(cfg) -> dict:
    """``{"seeds_honoured": bool, "reason": str, "by_role": {role: {...}}}``: honoured
    only when every role honours its seeds."""
    by_role = {}
    for r in ("draft", "target"):
        ok, why = role_honours_seeds(getattr(cfg, r))
        by_role[r] = {"honoured": ok, "reason": why}
    bad = [f"{r}: {v['reason']}" for r, v in by_role.items() if not v["honoured"]]
    return {"seeds_honoured": not bad, "reason": "; ".join(bad) if bad else "every role honours request seeds",
            "by_role": by_role}
