"""Datasets: one registry, loaded from the Hugging Face hub on users' machines and from
local JSONL copies where the hub is out of reach.

Every question is a `Question(index, id, problem, answer, kind, choices)`. ``index`` is
its position in the loaded (preset/limited) list, which names result files.

Local files: ``<data_dir>/<file>.jsonl`` with one object per line holding at least
``problem`` and ``answer``. ``data_dir`` is the config's ``dataset.data_dir``, else
``$ATTS_DATA_DIR``, else ``../shared/datasets`` next to the repository.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from atts.errors import DatasetError
from atts.tasks import arith


@dataclass(frozen=True)
class Question:
    index: int
    id: str
    problem: str
    answer: str
    kind: str = "math"  # math | mc | arith
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str
    local_file: str | None  # file name in the local data directory
    hub: tuple[str, str | None, str] | None  # (path, config, split)
    problem_key: str = "problem"
    answer_key: str = "answer"


DATASETS: dict[str, DatasetSpec] = {
    "math500": DatasetSpec("math500", "math", "math500.jsonl", ("HuggingFaceH4/MATH-500", None, "test")),
    "aime24": DatasetSpec("aime24", "math", "aime24.jsonl", ("simplescaling/aime24_nofigures", None, "train")),
    "aime25": DatasetSpec("aime25", "math", "aime25.jsonl", ("simplescaling/aime25_nofigures", None, "train")),
    "amc": DatasetSpec("amc", "math", "amc_aimo_validation.jsonl", ("AI-MO/aimo-validation-amc", None, "train")),
    "amc23": DatasetSpec("amc23", "math", "amc23.jsonl", None),
    "olympiadbench": DatasetSpec("olympiadbench", "math", "olympiadbench_numerical_single.jsonl",
                                 ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train"), "question", "final_answer"),
    "gsm8k": DatasetSpec("gsm8k", "math", "gsm8k_test.jsonl", ("openai/gsm8k", "main", "test"), "question", "answer"),
    "gpqa": DatasetSpec("gpqa", "mc", None, ("Idavidrein/gpqa", "gpqa_diamond", "train"), "Question", "Correct Answer"),
    "arith": DatasetSpec("arith", "arith", None, None),
}

# The research code's subsets (ATTS_NOTES.md): name -> (dataset, how)
PRESETS: dict[str, tuple[str, str, int]] = {
    "research_math500": ("math500", "sample_seed42", 100),
    "research_aime24": ("aime24", "first", 15),
    "research_aime25": ("aime25", "first", 15),
    "research_amc": ("amc", "first", 50),
    "research_olympiadbench": ("olympiadbench", "first", 50),
    "research_gpqa": ("gpqa", "first", 60),
    "research_gsm8k": ("gsm8k", "sample_seed42", 100),
}

ARITH_DEFAULT_SIZE = {"train": 20000, "calibration": 200, "test": 200}


def default_data_dir() -> Path:
    env = os.environ.get("ATTS_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "datasets"


def _read_jsonl(path: Path, spec: DatasetSpec) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{path}:{lineno}: expected a JSON object")
            for key in ("problem", "answer"):
                alt = spec.problem_key if key == "problem" else spec.answer_key
                if row.get(key) in (None, "") and row.get(alt) in (None, ""):
                    raise DatasetError(f"{path}:{lineno}: row has no {key!r}")
            row["_line"] = lineno
            rows.append(row)
    return rows


def _hub_rows(spec: DatasetSpec) -> list[dict]:
    try:
        import datasets as hf  # deferred: HF datasets is heavy (seconds) and only needed for a hub download
    except ImportError as e:
        raise DatasetError(f"{spec.name}: loading from the hub needs the `datasets` package") from e
    path, conf, split = spec.hub
    ds = hf.load_dataset(path, conf, split=split)
    return [dict(r) for r in ds]


def _normalise(spec: DatasetSpec, rows: list[dict], seed: int) -> list[Question]:
    out: list[Question] = []
    for i, row in enumerate(rows):
        if spec.kind == "mc":
            correct = str(row[spec.answer_key]).strip()
            wrong = [str(row[f"Incorrect Answer {k}"]).strip() for k in (1, 2, 3)]
            rng = random.Random(f"{seed}/{i}")
            choices = [correct, *wrong]
            rng.shuffle(choices)  # choices shuffled with a seed: the answer is not always A
            letter = "ABCD"[choices.index(correct)]
            out.append(Question(i, str(row.get("Record ID", i)), str(row[spec.problem_key]).strip(), letter, "mc",
                                tuple(choices)))
            continue
        problem = row.get("problem") or row.get(spec.problem_key)
        answer = row.get("answer") if row.get("answer") not in (None, "") else row.get(spec.answer_key)
        if isinstance(answer, list):  # OlympiadBench final_answer is a list
            answer = answer[0] if len(answer) == 1 else ", ".join(map(str, answer))
        answer = str(answer)
        if spec.name == "gsm8k" and "####" in answer:
            answer = answer.split("####")[-1].strip().replace(",", "")
        answer = answer.strip()
        if answer.startswith("$") and answer.endswith("$") and len(answer) > 1:
            answer = answer.strip("$").strip()
        out.append(Question(i, str(row.get("id", row.get("unique_id", i))), str(problem), answer, spec.kind))
    return out


def load_questions(name: str, *, split: str = "test", preset: str | None = None, limit: int | None = None,
                   source: str = "auto", data_dir: str | None = None, size: int | None = None,
                   seed: int = 0) -> list[Question]:
    """Load a dataset's questions. ``preset`` selects a named subset (see PRESETS),
    ``limit`` then keeps the first N."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    spec = DATASETS[name]
    if spec.kind == "arith":
        n = size or ARITH_DEFAULT_SIZE.get(split, 200)
        if limit:
            n = min(n, limit)
        try:
            probs = arith.generate(split, n, seed=seed)
        except ValueError as e:
            raise DatasetError(str(e)) from None
        return [Question(i, p.id, p.problem, p.answer, "arith") for i, p in enumerate(probs)]

    rows = None
    local = Path(data_dir) if data_dir else default_data_dir()
    if source in ("auto", "local") and spec.local_file and (local / spec.local_file).is_file():
        rows = _read_jsonl(local / spec.local_file, spec)
    elif source == "local":
        raise DatasetError(f"{name}: no local copy at {local / (spec.local_file or '?')}")
    if rows is None:
        if spec.hub is None:
            raise DatasetError(f"{name}: no local copy in {local} and no hub source")
        rows = _hub_rows(spec)
    qs = _normalise(spec, rows, seed)
    if preset:
        if preset not in PRESETS:
            raise DatasetError(f"unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
        pname, how, n = PRESETS[preset]
        if pname != name:
            raise DatasetError(f"preset {preset!r} is for dataset {pname!r}, not {name!r}")
        if how == "first":
            qs = qs[:n]
        else:
            idx = sorted(random.Random(42).sample(range(len(qs)), min(n, len(qs))))
            qs = [qs[i] for i in idx]
        qs = [Question(i, q.id, q.problem, q.answer, q.kind, q.choices) for i, q in enumerate(qs)]
    if limit:
        qs = qs[:limit]
    return qs


def load_from_config(ds, *, split: str | None = None, limit: int | None = None) -> list[Question]:
    return load_questions(ds.name, split=split or ds.split, preset=ds.preset,
                          limit=limit if limit is not None else ds.limit, source=ds.source,
                          data_dir=ds.data_dir, size=ds.size, seed=ds.seed)
