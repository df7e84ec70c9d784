"""``python -m atts.reextract RUN_DIR [--field llm] [--model M] [--base-url URL]
[--concurrency N] [--max-tokens N] [--max-chars N] [--dry-run] [--force] [--judge]``
(= ``atts reextract``, ``scripts/re_extract_answer.sh``).

An LLM re-extracts the final answer of every completed sample from its reasoning,
through any OpenAI-compatible API (OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_MODEL, as in
the research code; `atts.llm`). Non-destructive: the original ``answer`` and
``correct`` are never touched; the new answer goes beside them, with its provenance and
its math-verify verdict:
    record["answers"]["llm"] = {"answer", "raw", "correct", "grader", "model", "base_url",
                                "time", "time_iso", "prompt", "max_chars", "usage" | "error"}

so grading can choose the field (``atts grade RUN_DIR --answer-field llm``). Resumable:
a record already extracted into the field by the same model is skipped (``--force``
redoes it; the entry it replaces is kept in ``record["answers_replaced"]``). Each record
is rewritten atomically as soon as its answer arrives. ``--dry-run`` sends nothing and
writes nothing: it prints what would be done and one example prompt. ``--judge`` then
runs the LLM judge (`atts.judge`, anyone_check) on the re-extracted answers, as the
research code judged its LLM-extracted answers.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path

from atts.analysis.judge import judge, report_line
from atts.analysis.llm import LLMClient, LLMConfigError, LLMSettings, check_run_dir, each_with_bar
from atts.errors import UserError, run_guarded
from atts.runtime.store import RunStore, atomic_write_json
from atts.tasks.grading import Grader, extract_boxed
from atts.records import is_complete

PROMPT_VERSION = "atts-extract/1"
SYSTEM = "Extract the final answer."
USER = ("Problem: {question}\n\nEnd of a solution:\n{tail}\n\n"
        "Reply with only its final answer (no words), or NONE if it has none.")
_NONE = {"none", "invalid", "no answer", "n/a", ""}


def build_messages(record: dict, max_chars: int) -> list[dict]:
    """The prompt: the question and the last ``max_chars`` characters of the reasoning
    (the final answer is at the end; the tail keeps the prompt within small contexts)."""
    text = record.get("text") or ""
    tail = text[-max_chars:] if max_chars > 0 else text
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": USER.format(question=record.get("question", ""), tail=tail)}]


def parse_reply(text: str) -> str | None:
    """The answer in a reply: a \\boxed{} inside it if any, else the reply stripped of
    $ signs and a trailing period; None for NONE/invalid/empty."""
    boxed = extract_boxed(text)
    a = boxed if boxed is not None else text
    prev = None
    while a != prev:  # peel whitespace, $ and trailing periods in any order
        prev, a = a, a.strip().strip("$").rstrip(".")
    return None if a.lower() in _NONE else a


def needs_work(record: dict, field_name: str, model: str, force: bool) -> bool:
    if not is_complete(record):
        return False
    have = (record.get("answers") or {}).get(field_name)
    return force or not have or have.get("model") != model or "error" in have


def attach(record: dict, field_name: str, entry: dict) -> dict:
    """The record with ``entry`` added under answers[field_name]; a previous entry there
    moves to answers_replaced (nothing is lost)."""
    rec = dict(record)
    answers = dict(rec.get("answers") or {})
    if field_name in answers:
        rec["answers_replaced"] = list(rec.get("answers_replaced") or []) + [{"field": field_name, **answers[field_name]}]
    answers[field_name] = entry
    rec["answers"] = answers
    return rec


async def reextract(run_dir: Path, settings: LLMSettings, *, field_name: str = "llm", concurrency: int = 8,
                    max_tokens: int = 64, max_chars: int = 4000, force: bool = False, progress: bool = True,
                    workers: int = 2) -> dict:
    if field_name in ("answer", "ours"):
        raise LLMConfigError(f"--field {field_name!r} is reserved for our own extraction")
    store = RunStore(run_dir)
    records = store.completed()
    todo = [k for k, r in records.items() if needs_work(r, field_name, settings.model, force)]
    loop = asyncio.get_running_loop()
    counts = {"extracted": 0, "errors": 0, "skipped": len(records) - len(todo), "total": len(records)}
    with Grader(workers) as grader:
        async with LLMClient(settings, concurrency) as client:
            async def one(key: str) -> None:
                rec = records[key]
                r = await client.chat(build_messages(rec, max_chars), max_tokens)
                entry = {**settings.stamp(), "prompt": PROMPT_VERSION, "max_chars": max_chars,
                         "seconds": round(r["seconds"], 4)}
                if "error" in r:
                    entry.update(answer=None, correct=None, error=r["error"])
                    counts["errors"] += 1
                else:
                    ans = parse_reply(r["text"])
                    correct = (await loop.run_in_executor(
                        None, grader.grade, [(ans, rec.get("gold"), rec.get("kind", "math"))]))[0]
                    entry.update(answer=ans, raw=r["text"], finish_reason=r["finish_reason"], usage=r["usage"],
                                 correct=correct, grader="math-verify")
                    counts["extracted"] += 1
                atomic_write_json(store.samples_dir / f"{key}.json", attach(rec, field_name, entry))

            await each_with_bar(todo, one, desc=f"re-extract ({settings.model})", unit="sample", progress=progress)
    return counts


def dry_run(run_dir: Path, settings: LLMSettings, field_name: str, max_chars: int, force: bool) -> str:
    records = RunStore(run_dir).completed()
    todo = [k for k, r in records.items() if needs_work(r, field_name, settings.model, force)]
    lines = [f"dry run: would re-extract {len(todo)} of {len(records)} records of {run_dir} into answers.{field_name}",
             f"  model {settings.model}, base URL {settings.provenance()['base_url'] or '(OpenAI default)'}"]
    if todo:
        lines.append("  example prompt:\n" + json.dumps(build_messages(records[todo[0]], max_chars), indent=1,
                                                        ensure_ascii=False))
    return "\n".join(lines)


def command(args) -> int:
    """``atts reextract`` with its parsed arguments (the parser is `atts.cli`'s): the exit status."""

    def body():
        d = Path(args.run_dir)
        check_run_dir(d)
        try:
            settings = LLMSettings.from_env(args.model, args.base_url, args.timeout, args.retries)
            if args.dry_run:
                print(dry_run(d, settings, args.field, args.max_chars, args.force))
                return 0
            c = asyncio.run(reextract(d, settings, field_name=args.field, concurrency=args.concurrency,
                                      max_tokens=args.max_tokens, max_chars=args.max_chars, force=args.force,
                                      progress=not args.no_progress))
        except LLMConfigError as e:
            raise UserError(str(e)) from None
        print(f"re-extracted {c['extracted']} answers into answers.{args.field} ({c['skipped']} already done, "
              f"{c['errors']} errors) in {d}")
        rc = 0 if c["errors"] == 0 else 1
        if args.judge:
            j = asyncio.run(judge(d, settings, field_name=args.field, concurrency=args.concurrency,
                                  max_tokens=args.judge_max_tokens, force=args.force, progress=not args.no_progress))
            print(report_line(j, d, args.field))
            rc = max(rc, 0 if j["errors"] == 0 else 1)
        return rc

    return run_guarded(body)


if __name__ == "__main__":  # the parser lives in atts.cli (imported by name: cli imports this module)
    sys.exit(importlib.import_module("atts.cli").main(["reextract", *sys.argv[1:]]))
