"""LLM answer re-extraction and the LLM judge against a real OpenAI-compatible server: the
testbed target's SGLang `/v1/chat/completions`. The testbed target knows only its task,
so its replies are nonsense as answers; these tests check the mechanism: every record gets the new field
with provenance, the original answer is untouched, a rerun skips what is done,
--dry-run writes nothing, judge verdicts are stored, grading can use either field, and
the API key never reaches a file or the output."""

import asyncio
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from atts.commands.evaluate import evaluate_async
from atts.runtime.session import build_roles, close_roles
from conftest import ROOT

FAKE_KEY = "sk-atts-fake-KEY-do-not-leak-123"
N_Q, K = 4, 2


def _tree_digest(d):
    h = hashlib.sha256()
    for p in sorted(d.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(d)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def run_dir(testbed, tmp_path_factory):
    """A finished draft_only run of 4 questions x 2 samples on the testbed."""
    tmp = tmp_path_factory.mktemp("reextract")
    cfg = testbed.config(tmp, sets=[f"samples_per_question={K}"], limit=N_Q, policy="draft_only",
                         output_dir=str(tmp / "run"))

    async def go():
        roles = build_roles(cfg, {r: list(getattr(cfg, r).urls) for r in ("draft", "target")})
        try:
            return await evaluate_async(cfg, roles, progress=False)
        finally:
            await close_roles(roles)

    s = asyncio.run(go())
    assert s["n_samples_completed"] == N_Q * K
    return tmp / "run"


@pytest.fixture
def llm_env(testbed, monkeypatch):
    """The OpenAI variables, set for in-process commands and returned for subprocesses."""
    env = {"OPENAI_API_KEY": FAKE_KEY, "OPENAI_BASE_URL": testbed.urls["target"] + "/v1",
           "OPENAI_MODEL": "chain-target"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT), **env)


OUTPUTS = []  # every command's stdout+stderr, checked for the key at the end


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capfd):
    """Run ``atts <args>`` in this process (the real entry point, without paying an
    interpreter start per call), or a script in a subprocess; output captured."""
    from atts.cli import main

    def run(*args, script=None, env=None):
        if script:
            r = subprocess.run(["bash", str(ROOT / script), *args], capture_output=True, text=True, cwd=ROOT,
                               env=env, timeout=300)
            res = Result(r.returncode, r.stdout, r.stderr)
        else:
            capfd.readouterr()
            rc = main(list(args))
            out, err = capfd.readouterr()
            res = Result(rc, out, err)
        OUTPUTS.append(res.stdout + res.stderr)
        return res
    return run


def _records(d):
    return {p.stem: json.loads(p.read_text()) for p in sorted((d / "samples").glob("*.json"))}


def test_dry_run_writes_nothing(run_dir, llm_env, cli):
    before = _tree_digest(run_dir)
    r = cli("reextract", str(run_dir), "--dry-run", "--max-chars", "120")
    assert r.returncode == 0, r.stderr
    assert f"would re-extract {N_Q * K} of {N_Q * K}" in r.stdout and "chain-target" in r.stdout
    r = cli("judge", str(run_dir), "--dry-run")
    assert r.returncode == 0 and f"would judge {N_Q} of {N_Q}" in r.stdout, r.stderr
    assert _tree_digest(run_dir) == before


def test_reextract_adds_answer_beside_original_and_resumes(run_dir, llm_env, cli):
    before = _records(run_dir)
    r = cli(str(run_dir), "--max-tokens", "6", "--max-chars", "120", "--no-progress", "--judge",
            script="scripts/re_extract_answer.sh", env=llm_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"re-extracted {N_Q * K} answers" in r.stdout and f"judged {N_Q} questions" in r.stdout
    assert json.loads((run_dir / "judge_llm.json").read_text())["answer_field"] == "llm"
    after = _records(run_dir)
    assert after.keys() == before.keys()
    for k, rec in after.items():
        e = rec["answers"]["llm"]
        assert e["model"] == "chain-target" and e["base_url"] == llm_env["OPENAI_BASE_URL"]
        assert e["time"] > 0 and e["time_iso"] and e["prompt"] and isinstance(e["raw"], str) and "error" not in e
        assert e["correct"] in (True, False) and e["grader"] == "math-verify"
        # nothing of the original record changed
        assert {x: v for x, v in rec.items() if x != "answers"} == before[k]
    digest = _tree_digest(run_dir)
    r = cli("reextract", str(run_dir), "--max-tokens", "6", "--max-chars", "120", "--no-progress", "--judge")
    assert r.returncode == 0 and "re-extracted 0 answers" in r.stdout and f"{N_Q * K} already done" in r.stdout
    assert f"judged 0 questions ({N_Q} already done" in r.stdout
    assert _tree_digest(run_dir) == digest


def test_judge_stores_verdicts_and_resumes(run_dir, llm_env, cli):
    r = cli("judge", str(run_dir), "--no-progress")
    assert r.returncode == 0, r.stdout + r.stderr
    j = json.loads((run_dir / "judge_answer.json").read_text())
    assert j["format"] == "atts-judge/1" and len(j["questions"]) == N_Q
    for q in j["questions"].values():
        assert len(q["answers"]) == K and q["model"] == "chain-target" and q["verdict"] in (True, False, None)
        assert isinstance(q["raw"], str) and q["time"] > 0 and q["gold"]
    r = cli("judge", str(run_dir), "--no-progress")
    assert "judged 0 questions" in r.stdout and f"{N_Q} already done" in r.stdout


def test_grading_chooses_the_answer_field(run_dir, llm_env, cli, tmp_path):
    summary = json.loads((run_dir / "summary.json").read_text())
    out = tmp_path / "g.json"
    r = cli("grade", str(run_dir), "--output", str(out))
    assert r.returncode == 0, r.stderr
    g = json.loads(out.read_text())
    assert g["format"] == "atts-run" and g["answer_field"] == "answer" and g["n_samples"] == N_Q * K
    assert g["pass@1"] == summary["pass@1"] and "llm" in g["fields"]
    r = cli("grade", str(run_dir), "--answer-field", "llm", "--output", str(out))
    assert r.returncode == 0, r.stderr
    g = json.loads(out.read_text())
    stored = [rec["answers"]["llm"]["correct"] for rec in _records(run_dir).values()]
    assert g["answer_field"] == "llm" and abs(g["pass@1"] - sum(stored) / len(stored)) < 1e-12


def test_report_shows_both_gradings(run_dir, llm_env, cli, tmp_path):
    r = cli("report", str(run_dir), "--output", str(tmp_path / "rep"))
    assert r.returncode == 0, r.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| draft_only | llm | math-verify |" in md and "LLM judge (chain-target)" in md


def test_api_errors_and_force_keep_everything_and_never_the_key(run_dir, llm_env, cli, monkeypatch, tmp_path):
    """--force against a server that is not there (its URL carrying the key as a
    password): every item records a scrubbed error, the entry it replaced is kept in
    answers_replaced, the original answer stays, the exit code is 1; then no file or
    output anywhere holds the key."""
    d = tmp_path / "copy"
    shutil.copytree(run_dir, d)
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://user:{FAKE_KEY}@127.0.0.1:9/v1")
    r = cli("reextract", str(d), "--force", "--retries", "0", "--timeout", "5", "--no-progress")
    assert r.returncode == 1 and f"{N_Q * K} errors" in r.stdout, r.stdout + r.stderr
    orig = _records(run_dir)
    for k, rec in _records(d).items():
        e = rec["answers"]["llm"]
        assert e["error"] and e["answer"] is None and e["base_url"] == "http://127.0.0.1:9/v1"
        assert rec["answers_replaced"] == [{"field": "llm", **orig[k]["answers"]["llm"]}]
        assert rec["answer"] == orig[k]["answer"] and rec["correct"] == orig[k]["correct"]
    # a rerun retries the errors (resume skips only successful extractions)
    r = cli("reextract", str(d), "--dry-run")
    assert f"would re-extract {N_Q * K} of {N_Q * K}" in r.stdout
    for root in (run_dir, d):
        for p in root.rglob("*"):
            if p.is_file():
                assert FAKE_KEY not in p.read_text(errors="replace"), p
    assert OUTPUTS and not any(FAKE_KEY in o for o in OUTPUTS)
