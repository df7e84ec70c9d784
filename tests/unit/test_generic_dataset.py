"""A config can name any hub dataset or local JSONL with its fields (like an lm-eval task
YAML); hub failures (gated without a token, offline, unknown split) exit 2 with one line.
The hub loader is monkeypatched to raise the real `datasets` exception types."""

import json
from pathlib import Path

import pytest

from atts.cli import main
from atts.config import load_config, with_overrides
from atts.errors import ConfigError, DatasetError
from atts.tasks import datasets as ds_mod
from atts.tasks.datasets import dataset_source, load_from_config

hf = pytest.importorskip("datasets")
from datasets.exceptions import DatasetNotFoundError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CFG = ROOT / "configs" / "testbed.yaml"


def config(tmp_path, **dataset):
    body = {"name": "mine", **dataset}
    y = tmp_path / "c.yaml"
    y.write_text(f"extends: {CFG}\ndataset: {json.dumps(body)}\noutput_dir: {tmp_path / 'out'}\n")
    return y


@pytest.fixture
def jsonl(tmp_path):
    p = tmp_path / "qs.jsonl"
    rows = [{"uid": "a", "q": "1+1?", "sol": "2"},
            {"uid": "b", "q": "Pick the prime.", "sol": 1, "opts": ["4", "7", "9"]},
            {"uid": "c", "q": "Capital of France?", "sol": "Paris", "opts": ["Rome", "Paris"]}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_local_jsonl_with_named_fields(tmp_path, jsonl):
    cfg = load_config(config(tmp_path, path=str(jsonl), problem_field="q", answer_field="sol", id_field="uid"))
    qs = load_from_config(cfg.dataset)
    assert [(q.id, q.problem, q.answer, q.kind) for q in qs] == [
        ("a", "1+1?", "2", "math"), ("b", "Pick the prime.", "1", "math"), ("c", "Capital of France?", "Paris", "math")]
    assert load_from_config(cfg.dataset, limit=1)[0].id == "a"
    src = dataset_source(cfg.dataset)
    assert src["kind"] == "local" and src["file"] == "qs.jsonl" and len(src["sha256"]) == 64


def test_multiple_choice_by_index_or_text(tmp_path, jsonl):
    rows = [json.loads(x) for x in jsonl.read_text().splitlines()][1:]
    mc = tmp_path / "mc.jsonl"
    mc.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = load_config(config(tmp_path, path=str(mc), problem_field="q", answer_field="sol", choices_field="opts"))
    qs = load_from_config(cfg.dataset)
    assert [(q.answer, q.kind, q.choices) for q in qs] == [("B", "mc", ("4", "7", "9")), ("B", "mc", ("Rome", "Paris"))]


def test_bad_rows_and_names_are_user_errors(tmp_path, jsonl):
    cfg = load_config(config(tmp_path, path=str(jsonl), problem_field="question"))
    with pytest.raises(DatasetError, match=r"qs.jsonl:1: row has no 'question'"):
        load_from_config(cfg.dataset)
    with pytest.raises(DatasetError, match="no file"):
        load_from_config(load_config(config(tmp_path, path=str(tmp_path / "nope.jsonl"))).dataset)
    with pytest.raises(ConfigError, match="or give dataset.path"):
        with_overrides(load_config(CFG), sets=["dataset.name=mine"])


def test_hub_dataset_passes_subset_split_revision(tmp_path, monkeypatch):
    seen = {}

    def fake_load(path, name=None, *, split, revision=None):
        seen.update(path=path, name=name, split=split, revision=revision)
        return [{"question": "2+2?", "label": "4"}]

    monkeypatch.setattr(hf, "load_dataset", fake_load)
    cfg = load_config(config(tmp_path, path="org/set", subset="main", split="validation", revision="abc123",
                             problem_field="question", answer_field="label"))
    (q,) = load_from_config(cfg.dataset)
    assert (q.problem, q.answer) == ("2+2?", "4")
    assert seen == {"path": "org/set", "name": "main", "split": "validation", "revision": "abc123"}
    assert dataset_source(cfg.dataset) == {"kind": "hub", "path": "org/set", "subset": "main",
                                           "split": "validation", "revision": "abc123"}


GATED = DatasetNotFoundError("Dataset 'org/gated' is a gated dataset on the Hub. You must be authenticated to access it.")
OFFLINE = ConnectionError("Couldn't reach 'org/set' on the Hub (OfflineModeIsEnabled)")
SPLIT = ValueError('Unknown split "nope". Should be one of [\'train\', \'test\'].')


@pytest.mark.parametrize("exc,words", [(GATED, ["gated", "HF_TOKEN"]), (OFFLINE, ["cannot reach the hub", "local copy"]),
                                       (SPLIT, ["Unknown split", "'nope'"])])
def test_hub_errors_exit_2_with_one_line(tmp_path, monkeypatch, capsys, exc, words):
    def fail(*a, **kw):
        raise exc

    monkeypatch.setattr(hf, "load_dataset", fail)
    y = config(tmp_path, path="org/set", split="nope")
    assert main(["evaluate", "--config", str(y), "--policy", "draft_only", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert all(w in err for w in words), err


def test_registry_hub_dataset_gated_exits_2(monkeypatch, capsys, tmp_path):
    def fail(*a, **kw):
        raise GATED

    monkeypatch.setattr(hf, "load_dataset", fail)
    monkeypatch.setenv("ATTS_DATA_DIR", str(tmp_path))  # no local copy: the hub is asked
    rc = main(["evaluate", "--config", str(CFG), "--set", "dataset.name=gpqa", "--policy", "draft_only",
               "--output-dir", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "gpqa" in err and "gated" in err and "Traceback" not in err
    assert ds_mod.DATASETS["gpqa"].hub is not None
