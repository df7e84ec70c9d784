"""User errors: a clear one-line message, a non-zero exit code, no traceback. These run
the real entry points as a user would (no servers are needed to reach the error)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def run(*args, cwd=ROOT):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=120, env=env)


def write_cfg(tmp_path, text):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


BASE = """
draft: {model: models/tiny-draft, urls: ["http://127.0.0.1:9"]}
target: {model: models/tiny-target, urls: ["http://127.0.0.1:9"]}
dataset: {name: arith, split: test, limit: 2}
chunking: {stop: ["\\n\\n"], max_tokens_per_chunk: 40, max_turns: 8, token_budget: 400}
policy: {name: atts, alpha: 0.4}
"""


@pytest.mark.parametrize("extra,needle", [
    ("samples_per_questions: 2\n", "samples_per_questions: unknown key"),
    ("sampling: {draft_temperature: hot}\n", "sampling.draft_temperature: expected a number"),
    ("target: {model: models/tiny-target, urls: [\"http://127.0.0.1:9\"], on_server_down: maybe}\n",
     "target.on_server_down: expected one of ['fail', 'wait']"),
    ("target: {model: models/tiny-target, urls: [\"http://127.0.0.1:9\"], timeout_s: 0}\n", "target.timeout_s: must be > 0"),
])
def test_bad_config(tmp_path, extra, needle):
    r = run("atts.evaluate", "--config", str(write_cfg(tmp_path, BASE + extra)), "--output-dir", str(tmp_path / "o"))
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_missing_calibration(tmp_path):
    cfg = write_cfg(tmp_path, BASE + f"output_dir: {tmp_path / 'o'}\n")
    r = run("atts.evaluate", "--config", str(cfg))
    assert r.returncode == 2 and "calibration file not found" in r.stderr and "Traceback" not in r.stderr


def test_mismatched_calibration_refused_unless_forced(tmp_path):
    from atts.method.conformal import CalibrationFile

    cal = tmp_path / "cal.json"
    CalibrationFile("per_turn", {"turn:0": [1.0, 2.0]}, {"draft_model": "other-draft", "target_model": "models/tiny-target",
                                                        "chunking": {"stop": ["\n\n"], "max_tokens_per_chunk": 99}},
                    alpha=0.4).save(cal)
    cfg = write_cfg(tmp_path, BASE + f"output_dir: {tmp_path / 'o'}\n")
    r = run("atts.evaluate", "--config", str(cfg), "--calibration", str(cal))
    assert r.returncode == 2 and "draft_model" in r.stderr and "chunking" in r.stderr and "--force" in r.stderr
    forced = run("atts.evaluate", "--config", str(cfg), "--calibration", str(cal), "--force")
    assert "does not match" not in forced.stderr and "unreachable" in forced.stderr  # got past the check


def test_output_dir_with_other_config_refused(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"run_hash": "someotherrun"}))
    cfg = write_cfg(tmp_path, BASE + f"output_dir: {out}\n")
    r = run("atts.evaluate", "--config", str(cfg), "--policy", "draft_only")
    assert r.returncode == 2 and "different config" in r.stderr and "Traceback" not in r.stderr
    assert "--force" in r.stderr and not (out / "samples").exists()
    forced = run("atts.evaluate", "--config", str(cfg), "--policy", "draft_only", "--force")
    assert "different config" not in forced.stderr and "unreachable" in forced.stderr  # got past the check


def test_unreachable_server(tmp_path):
    cfg = write_cfg(tmp_path, BASE + f"output_dir: {tmp_path / 'o'}\n")
    r = run("atts.evaluate", "--config", str(cfg), "--policy", "draft_only")
    assert r.returncode == 2 and "unreachable" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("row,needle", [('{"answer": "3"}', "math500.jsonl:2: row has no 'problem'"),
                                         ('{"problem": "2+2"}', "math500.jsonl:2: row has no 'answer'"),
                                         ('{"problem": "2+2", "answer": "4"', "math500.jsonl:2: invalid JSON")])
def test_bad_dataset_row(tmp_path, row, needle):
    (tmp_path / "math500.jsonl").write_text('{"problem": "1+1", "answer": "2"}\n' + row + "\n")
    cfg = write_cfg(tmp_path, BASE.replace("{name: arith, split: test, limit: 2}",
                                           f"{{name: math500, source: local, data_dir: {tmp_path}}}")
                    + f"output_dir: {tmp_path / 'o'}\n")
    r = run("atts.evaluate", "--config", str(cfg), "--policy", "draft_only")
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
