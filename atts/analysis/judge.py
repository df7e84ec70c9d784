"""``python -m atts.judge RUN_DIR [--answer-field answer] [--model M] [--dry-run] ...``

An optional LLM judge, next to the math-verify grader, compatible with the research
code's ``anyone_check``: for each question, the judge sees the gold answer and the K
answers of its samples and says whether ANY of them matches. The share of questions it
says yes to is pass@K as the research code measured it (with a paid judge model).

Verdicts go to ``RUN_DIR/judge_<field>.json`` (nothing else is touched), one entry per
question with the answers shown, the raw reply, the verdict (true / false / null when
the reply is neither yes nor no) and the provenance (model, base URL without
credentials, time). Resumable: a question already judged by the same model on the same
answers is skipped; the file is rewritten atomically after every verdict. Settings and
key handling as in `atts.reextract` (`atts.llm`).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

from atts.analysis.llm import LLMClient, LLMConfigError, LLMSettings, check_run_dir, each_with_bar
from atts.errors import UserError, run_guarded
from atts.runtime.store import RunStore, atomic_write_json
from atts.records import is_complete

FORMAT = "atts-judge/1"
PROMPT_VERSION = "atts-anyone-check/1"
SYSTEM = "You check math answers."
USER = "Reference: {gold}\nCandidates:\n{answers}\nDoes ANY candidate equal the reference? Reply YES or NO."


def judge_path(run_dir: Path, field_name: str) -> Path:
    return Path(run_dir) / f"judge_{field_name}.json"


def answer_of(record: dict, field_name: str) -> str | None:
    if field_name == "answer":
        return record.get("answer")
    entry = (record.get("answers") or {}).get(field_name)
    return entry.get("answer") if isinstance(entry, dict) else None


def questions_of(records: dict[str, dict], field_name: str) -> dict[str, dict]:
    """Question index -> {gold, answers (in sample order)} over completed samples."""
    by_q = defaultdict(list)
    for key in sorted(records):
        r = records[key]
        if is_complete(r):
            by_q[r["question_index"]].append(r)
    return {str(q): {"question_index": q, "gold": rs[0].get("gold"), "answers": [answer_of(r, field_name) for r in rs]}
            for q, rs in sorted(by_q.items())}


def build_messages(gold: str, answers: list[str | None]) -> list[dict]:
    listed = "\n".join(f"{i + 1}. {a if a not in (None, '') else '(no answer)'}" for i, a in enumerate(answers))
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER.format(gold=gold, answers=listed)}]


def parse_verdict(text: str) -> bool | None:
    """YES -> True, NO -> False; a reply that says both or neither -> None."""
    words = set(re.findall(r"[a-z]+", text.lower()))
    yes, no = "yes" in words, "no" in words
    return None if yes == no else yes


def load(path: Path) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    return {"format": FORMAT, "questions": {}}


def pass_at_k(doc: dict) -> float | None:
    v = [q["verdict"] for q in doc["questions"].values() if q.get("verdict") is not None]
    return sum(v) / len(v) if v else None


def todo_of(doc: dict, current: dict[str, dict], model: str, force: bool) -> list[str]:
    out = []
    for q, cur in current.items():
        have = doc["questions"].get(q)
        if force or not have or have.get("model") != model or "error" in have or have.get("answers") != cur["answers"]:
            out.append(q)
    return out


async def judge(run_dir: Path, settings: LLMSettings, *, field_name: str = "answer", concurrency: int = 8,
                max_tokens: int = 8, force: bool = False, progress: bool = True) -> dict:
    records = RunStore(run_dir).completed()
    current = questions_of(records, field_name)
    path = judge_path(run_dir, field_name)
    doc = load(path)
    doc.update({"format": FORMAT, "answer_field": field_name, "prompt": PROMPT_VERSION,
                "metric": "anyone_check: a question counts as solved if the judge says any of its answers matches"})
    todo = todo_of(doc, current, settings.model, force)
    counts = {"judged": 0, "errors": 0, "skipped": len(current) - len(todo)}
    lock = asyncio.Lock()
    async with LLMClient(settings, concurrency) as client:
        async def one(q: str) -> None:
            cur = current[q]
            r = await client.chat(build_messages(cur["gold"], cur["answers"]), max_tokens)
            entry = {**cur, **settings.stamp()}
            if "error" in r:
                entry.update(verdict=None, error=r["error"])
                counts["errors"] += 1
            else:
                entry.update(verdict=parse_verdict(r["text"]), raw=r["text"])
                counts["judged"] += 1
            async with lock:
                doc["questions"][q] = entry
                doc["pass@k"] = pass_at_k(doc)
                doc["updated"] = time.time()
                atomic_write_json(path, doc)

        await each_with_bar(todo, one, desc=f"judge ({settings.model})", unit="question", progress=progress)
    doc["pass@k"] = pass_at_k(doc)
    atomic_write_json(path, doc)
    counts["pass@k"] = doc["pass@k"]
    counts["unparsed"] = sum(q.get("verdict") is None and "error" not in q for q in doc["questions"].values())
    return counts


def report_line(c: dict, run_dir: Path, field_name: str) -> str:
    pk = f"{c['pass@k']:.4f}" if c["pass@k"] is not None else "n/a"
    return (f"judged {c['judged']} questions ({c['skipped']} already done, {c['errors']} errors, "
            f"{c['unparsed']} replies neither yes nor no); judge pass@k {pk}; {judge_path(run_dir, field_name)}")


def command(args) -> int:
    """``atts judge`` with its parsed arguments (the parser is `atts.cli`'s): the exit status."""

    def body():
        d = Path(args.run_dir)
        check_run_dir(d)
        try:
            settings = LLMSettings.from_env(args.model, args.base_url, args.timeout, args.retries)
            if args.dry_run:
                cur = questions_of(RunStore(d).completed(), args.answer_field)
                todo = todo_of(load(judge_path(d, args.answer_field)), cur, settings.model, args.force)
                print(f"dry run: would judge {len(todo)} of {len(cur)} questions of {d} "
                      f"(answers: {args.answer_field}) with {settings.model} into {judge_path(d, args.answer_field)}")
                if todo:
                    print(build_messages(cur[todo[0]]["gold"], cur[todo[0]]["answers"])[1]["content"])
                return 0
            c = asyncio.run(judge(d, settings, field_name=args.answer_field, concurrency=args.concurrency,
                                  max_tokens=args.max_tokens, force=args.force, progress=not args.no_progress))
        except LLMConfigError as e:
            raise UserError(str(e)) from None
        print(report_line(c, d, args.answer_field))
        return 0 if c["errors"] == 0 else 1

    return run_guarded(body)


if __name__ == "__main__":  # the parser lives in atts.cli (imported by name: cli imports this module)
    sys.exit(importlib.import_module("atts.cli").main(["judge", *sys.argv[1:]]))
