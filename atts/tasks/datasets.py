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


def _read_jsonl(path: Path, spec: DatasetSpec, required: tuple[str, ...] = ("problem", "answer")) -> list[dict]:
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
            for key in required:
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
    return hub_filter(spec.name, hub_rows(path, conf, split, None, label=spec.name))


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
    if getattr(ds, "path", None):  # issue 14: a generic dataset (see the section below)
        return load_generic(GenericSource.of(ds), split=split or ds.split,
                            limit=limit if limit is not None else ds.limit, seed=ds.seed)
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


# ----------------------------------------------------------------------------- issue 14: any dataset
# A config's `dataset.path` names any hub dataset or local JSONL file, with the fields that
# hold the problem, the answer and (multiple choice) the choices, and a revision, as an
# lm-eval task YAML does:
#
#   dataset: {name: my_set, path: org/my-set, subset: main, split: test, revision: 3f2a...,
#             problem_field: question, answer_field: label, choices_field: options}
#
# Hub failures (gated without a token, offline, unknown dataset / split / config / revision)
# are one-line DatasetErrors (exit 2), never a traceback.


@dataclass(frozen=True)
class GenericSource:
    label: str
    path: str
    subset: str | None = None
    revision: str | None = None
    problem_field: str = "problem"
    answer_field: str = "answer"
    choices_field: str | None = None
    id_field: str | None = None

    @classmethod
    def of(cls, ds) -> "GenericSource":
        return cls(ds.name, ds.path, ds.subset, ds.revision, ds.problem_field, ds.answer_field, ds.choices_field,
                   ds.id_field)

    def local_file(self) -> Path | None:
        """The local JSONL file this path names (None: a hub id). A path ending in
        .jsonl/.json, or an existing file, is local; a relative one is looked up in the
        working directory, then the repository."""
        p = Path(self.path).expanduser()
        if p.is_file():
            return p
        repo = Path(__file__).resolve().parents[2] / p
        if repo.is_file():
            return repo
        if p.suffix in (".jsonl", ".json"):
            raise DatasetError(f"dataset {self.label}: no file {self.path}")
        return None


def hub_rows(path: str, subset: str | None, split: str, revision: str | None, *, label: str) -> list[dict]:
    """``datasets.load_dataset`` with its failures as one-line DatasetErrors."""
    try:
        import datasets as hf  # heavy and optional: only a hub dataset needs it
        from datasets.exceptions import DatasetNotFoundError, DatasetsError
    except ImportError as e:
        raise DatasetError(f"{label}: loading from the hub needs the `datasets` package") from e
    where = f"{path}" + (f" ({subset})" if subset else "") + (f"@{revision}" if revision else "")
    try:
        ds = hf.load_dataset(path, subset, split=split, revision=revision)
    except DatasetNotFoundError as e:
        msg = str(e).splitlines()[0] if str(e) else "not found"
        hint = " (set HF_TOKEN or run `hf auth login`, after accepting its terms on the hub)" if "gated" in msg else ""
        raise DatasetError(f"dataset {label}: {msg}{hint}") from None
    except ConnectionError as e:  # HF_HUB_OFFLINE=1 without a cached copy, or no network
        raise DatasetError(f"dataset {label}: cannot reach the hub for {where} ({str(e).splitlines()[0]}); "
                           "use a local copy (dataset.path: FILE.jsonl) or unset HF_HUB_OFFLINE") from None
    except (ValueError, DatasetsError, FileNotFoundError) as e:  # unknown split / config / revision
        raise DatasetError(f"dataset {label}: {where}, split {split!r}: {str(e).splitlines()[0]}") from None
    return [dict(r) for r in ds]


def _choice_letter(answer, choices: list, where: str) -> str:
    """The correct choice as a letter: from a letter, an index or the choice's text."""
    letters = [chr(ord("A") + i) for i in range(len(choices))]
    text = str(answer).strip()
    if text.upper() in letters:
        return text.upper()
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(choices):
        return letters[answer]
    texts = [str(c).strip() for c in choices]
    if text in texts:
        return letters[texts.index(text)]
    raise DatasetError(f"{where}: answer {answer!r} is not a choice letter, index or text of {texts}")


def generic_questions(src: GenericSource, rows: list[dict], origin: str) -> list[Question]:
    out = []
    for i, row in enumerate(rows):
        where = f"{origin}:{row.get('_line', i + 1)}"
        problem, answer = row.get(src.problem_field), row.get(src.answer_field)
        if problem in (None, ""):
            raise DatasetError(f"{where}: row has no {src.problem_field!r}")
        if answer is None or answer == "":
            raise DatasetError(f"{where}: row has no {src.answer_field!r}")
        qid = str(row[src.id_field]) if src.id_field and src.id_field in row else str(i)
        if src.choices_field:
            choices = row.get(src.choices_field)
            if not isinstance(choices, list) or not choices:
                raise DatasetError(f"{where}: {src.choices_field!r} is not a non-empty list")
            out.append(Question(i, qid, str(problem).strip(), _choice_letter(answer, choices, where), "mc",
                                tuple(str(c).strip() for c in choices)))
        else:
            out.append(Question(i, qid, str(problem).strip(), str(answer).strip(), "math"))
    return out


def load_generic(src: GenericSource, *, split: str, limit: int | None = None, seed: int = 0) -> list[Question]:
    """Questions of a generic dataset. A local file is read whole (``split`` names the
    hub split only); ``limit`` keeps the first N."""
    local = src.local_file()
    if local is not None:
        rows = _read_jsonl(local, DatasetSpec(src.label, "math", None, None, src.problem_field, src.answer_field),
                           required=())
        qs = generic_questions(src, rows, str(local))
    else:
        qs = generic_questions(src, hub_rows(src.path, src.subset, split, src.revision, label=src.label), src.path)
    return qs[:limit] if limit else qs


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dataset_source(ds, data_dir: str | None = None) -> dict:
    """Where a config's questions come from, for the manifest: ``{"kind": "local",
    "file", "sha256"}``, ``{"kind": "hub", "path", "subset", "split", "revision"}`` or
    ``{"kind": "generated"}``. A hub revision left unset is recorded as null (the hub's
    head at run time); pin ``dataset.revision`` to make it exact."""
    if getattr(ds, "path", None):
        src = GenericSource.of(ds)
        local = src.local_file()
        if local is not None:
            return {"kind": "local", "file": local.name, "sha256": file_sha256(local)}
        return {"kind": "hub", "path": src.path, "subset": src.subset, "split": ds.split, "revision": src.revision}
    spec = DATASETS.get(ds.name)
    if spec is None or spec.kind in SYNTHETIC:
        return {"kind": "generated", "name": ds.name, "seed": ds.seed}
    local = Path(ds.data_dir or data_dir or default_data_dir()) / (spec.local_file or "")
    if ds.source in ("auto", "local") and spec.local_file and local.is_file():
        return {"kind": "local", "file": local.name, "sha256": file_sha256(local)}
    path, conf, split = spec.hub or (None, None, None)
    return {"kind": "hub", "path": path, "subset": conf, "split": split, "revision": None}
