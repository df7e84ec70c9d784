"""Datasets: one registry, loaded from the Hugging Face hub on users' machines and from
local JSONL copies where the hub is out of reach.

Every question is a `Question(index, id, problem, answer, kind, choices)`. ``index`` is
its position in the loaded (preset/limited) list, which names result files.

Local files: ``<data_dir>/<file>.jsonl`` with one object per line holding at least
``problem`` and ``answer``. ``data_dir`` is the config's ``dataset.data_dir``, else
``$ATTS_DATA_DIR``, else ``../shared/datasets`` next to the repository.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

from atts.errors import DatasetError
from atts.tasks import arith, reasoning
from atts.tasks.grading import extract_boxed


@dataclass(frozen=True)
class Question:
    index: int
    id: str
    problem: str
    answer: str
    kind: str = "math"  # math | mc | arith | chain
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
    # AMC 2023's 40 problems (issue 13 item 7): math-ai/amc23, test split, `question` / `answer`
    "amc23": DatasetSpec("amc23", "math", "amc23.jsonl", ("math-ai/amc23", None, "test"), "question", "answer"),
    # hub rows filtered as the research code does: numerical, single answer (509 of 674; hub_filter)
    "olympiadbench": DatasetSpec("olympiadbench", "math", "olympiadbench_numerical_single.jsonl",
                                 ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train"), "question", "final_answer"),
    "gsm8k": DatasetSpec("gsm8k", "math", "gsm8k_test.jsonl", ("openai/gsm8k", "main", "test"), "question", "answer"),
    "gpqa": DatasetSpec("gpqa", "mc", None, ("Idavidrein/gpqa", "gpqa_diamond", "train"), "Question", "Correct Answer"),
    "arith": DatasetSpec("arith", "arith", None, None),
    "chain": DatasetSpec("chain", "chain", None, None),  # the testbed's reasoning-shaped task
}
SYNTHETIC = {"arith": arith, "chain": reasoning}  # generated: seeded, disjoint train/calibration/test

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
    return hub_filter(spec.name, [dict(r) for r in ds])


def hub_filter(name: str, rows: list[dict]) -> list[dict]:
    """The rows of a hub dataset the research code keeps: OlympiadBench's single-answer
    numerical items (``answer_type == "Numerical"`` and not ``is_multiple_answer``; 509
    of OE_TO_maths_en_COMP's 674, as its local copy). Other datasets: every row."""
    if name != "olympiadbench":
        return rows
    return [r for r in rows if r.get("answer_type") == "Numerical" and str(r.get("is_multiple_answer")) in ("False", "false", "0")]


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
        if isinstance(answer, float) and answer.is_integer():  # math-ai/amc23 gives 27.0
            answer = int(answer)
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
    if spec.kind in SYNTHETIC:
        n = size or ARITH_DEFAULT_SIZE.get(split, 200)
        if limit:
            n = min(n, limit)
        try:
            probs = SYNTHETIC[spec.kind].generate(split, n, seed=seed)
        except ValueError as e:
            raise DatasetError(str(e)) from None
        return [Question(i, p.id, p.problem, p.answer, spec.kind) for i, p in enumerate(probs)]

    if split == "calibration" and name in TRAIN_SPLITS:  # issue 13 item 2: the training split
        return held_out_questions(name, source=source, data_dir=data_dir, limit=limit)
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
    qs = partition(name, _normalise(spec, rows, seed), split)  # issue 13 item 2
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


# ----------------------------------------------------------------------------- held-out calibration (issue 13 item 2)
# Every real dataset has a calibration split disjoint from the evaluated one:
# - its own training split on the hub where there is one (TRAIN_SPLITS): MATH's train set
#   (7,500 problems, none of them in MATH-500, which is drawn from MATH's test set) for
#   math500, GSM8K's train split for gsm8k. Locally: ``<data_dir>/<file>`` if present.
# - else a fixed partition of the dataset itself (aime24, aime25, amc, amc23, olympiadbench,
#   gpqa): a question is in "calibration" when its rank by
#   sha256("atts-calibration/<dataset>/<id>") is below ceil(CALIBRATION_SHARE * n);
#   "test" is every other question, "all" the whole set. The rule depends only on the
#   ids, never on a config seed, so a partition never moves between runs.
# ``calibration.split: null`` calibrates on the evaluated questions themselves (the
# research code's setting); evaluate then records it, and otherwise refuses an overlap.

@dataclass(frozen=True)
class HeldOut:
    local_file: str
    hub: tuple[str, str | None, str]
    problem_key: str
    answer_key: str  # MATH's `solution` holds the answer in \boxed{}


TRAIN_SPLITS: dict[str, HeldOut] = {
    "math500": HeldOut("math_train.jsonl", ("DigitalLearningGmbH/MATH-lighteval", "default", "train"),
                       "problem", "solution"),
    "gsm8k": HeldOut("gsm8k_train.jsonl", ("openai/gsm8k", "main", "train"), "question", "answer"),
}
CALIBRATION_SHARE = 0.3


def partition_rank_key(name: str, qid: str) -> str:
    return hashlib.sha256(f"atts-calibration/{name}/{qid}".encode()).hexdigest()


def partition(name: str, qs: list[Question], split: str) -> list[Question]:
    """``split`` of a dataset without a training split: "calibration" (the first
    ceil(CALIBRATION_SHARE * n) questions by `partition_rank_key`), "test" (the others),
    "all"; kept in dataset order and re-indexed. Datasets with a training split
    (`TRAIN_SPLITS`) and split names other than these pass through."""
    if name in TRAIN_SPLITS or split not in ("calibration", "test") or DATASETS[name].kind in SYNTHETIC:
        return qs
    n_cal = math.ceil(CALIBRATION_SHARE * len(qs))  # e.g. AIME24: ceil(0.3 * 30) = 9 calibration questions
    cal = {q.id for q in sorted(qs, key=lambda q: partition_rank_key(name, q.id))[:n_cal]}
    keep = [q for q in qs if (q.id in cal) == (split == "calibration")]
    return [dataclasses.replace(q, index=i) for i, q in enumerate(keep)]


def _train_row_answer(held: HeldOut, name: str, row: dict) -> str:
    ans = str(row.get(held.answer_key, ""))
    if name == "gsm8k":
        return ans.split("####")[-1].strip().replace(",", "")
    boxed = extract_boxed(ans)
    return boxed if boxed is not None else ans.strip()


def held_out_questions(name: str, *, source: str = "auto", data_dir: str | None = None,
                       limit: int | None = None) -> list[Question]:
    """The calibration questions of a dataset with its own training split: the local
    copy ``<data_dir>/<HeldOut.local_file>`` if present, else the hub. Ids are prefixed
    ``train/`` so that they can never equal an evaluated question's id by accident."""
    held = TRAIN_SPLITS[name]
    local = (Path(data_dir) if data_dir else default_data_dir()) / held.local_file
    if source in ("auto", "local") and local.is_file():
        rows = _read_jsonl(local, DatasetSpec(name, "math", held.local_file, None, held.problem_key, held.answer_key))
    elif source == "local":
        raise DatasetError(f"{name}: no local copy of its training split (the calibration split) at {local}")
    else:
        rows = _hub_train_rows(name, held)
    out = []
    for i, row in enumerate(rows):
        problem = row.get(held.problem_key) or row.get("problem")
        qid = row.get("id", row.get("unique_id", i))
        out.append(Question(i, f"train/{qid}", str(problem), _train_row_answer(held, name, row), "math"))
    return out[:limit] if limit else out


def _hub_train_rows(name: str, held: HeldOut) -> list[dict]:
    try:
        import datasets as hf  # heavy and optional: only where the hub is used
    except ImportError as e:
        raise DatasetError(f"{name}: its calibration split (the hub's {held.hub[0]} {held.hub[2]}) needs the "
                           f"`datasets` package, or a local copy {held.local_file} in the data directory") from e
    path, conf, split = held.hub
    return [dict(r) for r in hf.load_dataset(path, conf, split=split)]
