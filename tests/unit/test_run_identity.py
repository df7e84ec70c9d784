"""Run identity (the resume check) is declared on the config fields: operational fields
(servers, concurrency, output place) are out, every other field, including a new one, is
in. The hash equals the one of the former deny-list, so existing runs still resume."""

import dataclasses

from atts.commands.evaluate import run_hash
from atts.config import ModelConfig, identity_dict, load_config, stable_hash, with_overrides
from atts.testing.testbed import ROOT

CFG = load_config(ROOT / "configs" / "testbed.yaml")

_RUN_HASH_EXCLUDE = {"output_dir", "samples_per_question", "server_start_timeout_s", "grading_workers", "name",
                     "max_in_flight"}  # added after the deny-list (operational): absent from old configs' dicts
_MODEL_EXCLUDE = {"launch", "urls", "device", "tp", "gpu_ids", "mem_fraction_static", "max_total_tokens",
                  "extra_args", "max_concurrency", "timeout_s", "retries", "cpu_threads", "engine",
                  "backoff_s", "on_server_down", "down_wait_s",
                  "api_key_env", "served_model_name"}  # issue 13 item 9's (secret / operational) fields


def deny_list_hash(cfg, calibration_hash):
    """The former evaluate.run_hash, verbatim."""
    d = cfg.to_dict()
    for k in _RUN_HASH_EXCLUDE:
        d.pop(k, None)
    for r in ("draft", "target"):
        d[r] = {k: v for k, v in d[r].items() if k not in _MODEL_EXCLUDE}
    d["dataset"].pop("limit", None)
    d.pop("calibration", None)
    d["calibration_hash"] = calibration_hash
    return stable_hash(d)


def test_hash_equals_the_former_deny_list():
    for cfg in (CFG, with_overrides(CFG, sets=["policy.alpha=0.2", "draft.max_concurrency=3", "dataset.limit=7"])):
        for cal in (None, "abc"):
            assert run_hash(cfg, cal) == deny_list_hash(cfg, cal)


def test_operational_fields_do_not_change_identity_and_others_do():
    ops = with_overrides(CFG, sets=["target.retries=9", "target.timeout_s=5", "dataset.limit=3",
                                    "draft.urls=[http://127.0.0.1:1]"], output_dir="/elsewhere")
    assert run_hash(ops, None) == run_hash(CFG, None)
    assert run_hash(with_overrides(CFG, sets=["sampling.seed=123"]), None) != run_hash(CFG, None)
    assert run_hash(with_overrides(CFG, sets=["draft.context_length=256"]), None) != run_hash(CFG, None)


def test_a_new_field_is_identity_unless_declared_operational():
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    kept = set(identity_dict(CFG)["draft"])
    assert kept == names - _MODEL_EXCLUDE  # every field not declared operational is in
