"""Issue 13 item 4: `calibration_meta` covers every setting that changes the per-turn
calibration scores; a mismatch refuses, --force overrides."""

import dataclasses

import pytest

from atts.commands import evaluate as ev
from atts.commands.calibrate import calibration_meta, tokenizer_identity
from atts.config import parse_config
from atts.errors import CalibrationError
from atts.method.conformal import CalibrationFile


def _d(tmp_path):
    return {"draft": {"model": "d", "urls": ["http://127.0.0.1:9"]}, "target": {"model": "t", "urls": ["http://127.0.0.1:9"]},
            "dataset": {"name": "arith", "split": "test"}, "policy": {"name": "atts", "grouping": "marginal"},
            "calibration": {"path": str(tmp_path / "cal.json")}, "output_dir": str(tmp_path / "run")}


def _with(d, section, key, value):
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    d.setdefault(section, {})[key] = value
    return d


CHANGES = [("policy", "mode", "append"), ("policy", "max_resample", 3), ("sampling", "target_temperature", 0.3),
           ("dataset", "name", "gsm8k"), ("calibration", "split", None), ("chunking", "max_turns", 7),
           ("chunking", "token_budget", 999), ("draft", "tokenizer", "other-tokenizer"),
           ("target", "tokenizer", "other-tokenizer")]


@pytest.mark.parametrize("section,key,value", CHANGES, ids=[f"{s}.{k}" for s, k, _ in CHANGES])
def test_each_setting_is_in_the_meta_and_a_change_refuses(tmp_path, section, key, value):
    base = parse_config(_d(tmp_path))
    changed = parse_config(_with(_d(tmp_path), section, key, value))
    assert calibration_meta(base) != calibration_meta(changed)
    CalibrationFile("marginal", {"all": [1.0] * 20}, calibration_meta(base) | {"questions": []}).save(base.calibration_path)
    with pytest.raises(CalibrationError, match="does not match this run"):
        ev.load_gate(changed, None, force=False)
    gate, _ = ev.load_gate(changed, None, force=True)  # --force still overrides
    assert gate is not None


def test_scoring_prompt_is_in_the_meta(tmp_path):
    cfg = parse_config(_d(tmp_path))
    assert calibration_meta(cfg, "text")["scoring_prompt"] == "text" != calibration_meta(cfg)["scoring_prompt"]
    CalibrationFile("marginal", {"all": [1.0] * 20}, calibration_meta(cfg)).save(cfg.calibration_path)
    with pytest.raises(CalibrationError, match="scoring_prompt"):
        ev.load_gate(cfg, None, force=False, scoring_prompt="text")


def test_tokenizer_identity_hashes_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"a": 1}')
    one = tokenizer_identity(str(tmp_path))
    (tmp_path / "tokenizer.json").write_text('{"a": 2}')
    assert one != tokenizer_identity(str(tmp_path)) and one.startswith(str(tmp_path) + "#sha256:")
    assert tokenizer_identity("org/hub-model") == "org/hub-model"
    d = _with(_d(tmp_path), "draft", "tokenizer", str(tmp_path))
    assert calibration_meta(parse_config(d))["tokenizers"]["draft"] == tokenizer_identity(str(tmp_path))
