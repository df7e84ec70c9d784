"""Issue 13 item 7: atts_self_fork through the real runner on the testbed's SGLang
servers: calibrate (the draft's own PPLs), evaluate 6 questions x 4 samples at alpha 0.5
so that some samples fail all 3 attempts of a turn, and check every fork against the
policy's definition."""

import pytest

from atts.commands.calibrate import calibrate_async
from atts.commands.evaluate import evaluate_async
from atts.method.policies import ATTSSelfForkParams
from atts.runtime.session import run_with_roles
from atts.runtime.store import RunStore

pytestmark = pytest.mark.server


def test_atts_self_fork_on_real_servers(testbed, tmp_path):
    cfg = testbed.config(tmp_path, policy="atts_self_fork", alpha=0.5, limit=6, samples_per_question=4,
                         sets=["policy.grouping=marginal", "policy.max_resample=2", "calibration.limit=15"])
    cal = run_with_roles(cfg, lambda roles: calibrate_async(cfg, roles, progress=False))
    cal.save(cfg.calibration_path)
    s = run_with_roles(cfg, lambda roles: evaluate_async(cfg, roles, progress=False))
    assert s["n_failed"] == 0 and s["n_samples_completed"] == 24
    recs = list(RunStore(cfg.output_dir).completed().values())
    hint = ATTSSelfForkParams().hint
    forks = [(r, st) for r in recs for st in r["steps"] if "fork_from" in st]
    for r, st in forks:
        assert st["fork_from"] != r["repeat"] and st["text"] == hint and hint in r["text"]
        tried = [x for x in r["steps"] if x["turn"] == st["turn"] and x["role"] == "draft" and "fork_from" not in x]
        judged = [x for x in tried if x.get("decision")]
        # max_resample + 1 attempts in all (3 here), none
        # kept; every judged one failed the test (an attempt that would end the sample is not judged)
        assert len(tried) == cfg.policy.params.max_resample + 1 and judged and not any(x["kept"] for x in tried)
        assert all(x["decision"] == "takeover" for x in judged)
    print(f"{len(forks)} forks in {len(recs)} samples")
    assert forks, "no sample failed all three attempts of a turn at alpha 0.5"
