"""atts.records: the typed sample record reads and writes exactly the JSON the run
directories hold (so old runs load and resume), and the shared predicates."""

from __future__ import annotations

import json

from atts.records import COMPLETE, SampleRecord, Step, first_attempt_decision, is_complete

REQ = {"kind": "generate", "role": "draft", "submitted": 1732870000.123456, "queue_s": 0.000012,
       "service_s": 0.412, "attempts": 1, "prompt_tokens": 96, "cached_tokens": 64, "output_tokens": 32,
       "url": "http://127.0.0.1:30000"}
SCORE = REQ | {"kind": "score", "role": "target", "output_tokens": 0, "prompt_tokens": 128}

# the shape runner.sample_record writes for a pipelined ATTS sample (append mode), with
# the keys `atts reextract` adds afterwards
RECORD = {
    "key": "q00003_r01", "question_index": 3, "question_id": "math500-3", "repeat": 1, "policy": "atts",
    "status": "done", "stop_reason": "answer", "error": None, "question": "What is $1+1$?", "gold": "2",
    "kind": "math", "answer": "2", "correct": True, "text": "Let me think.\n\nSo \\boxed{2}.", "turns": 2,
    "tokens": {"draft_generated": 40, "target_generated": 12, "target_scored": 32, "draft_wasted": 8,
               "draft_cancelled": 1},
    "steps": [
        {"turn": 0, "attempt": 0, "role": "draft", "text": "Let me think.\n\n", "n_tokens": 5, "finish": "stop",
         "kept": True, "requests": [REQ, SCORE], "ppl": 1.83, "mean_nll": 0.6043, "p_value": 0.41,
         "threshold": 2.7, "group": "turn_0", "decision": "accept"},
        {"turn": 1, "attempt": 0, "role": "draft", "text": "So 3", "n_tokens": 3, "finish": "length", "kept": True,
         "requests": [REQ, SCORE], "ppl": 9.1, "mean_nll": 2.208, "p_value": 0.01, "threshold": None,
         "group": "turn_1", "decision": "takeover", "pre_generated": True},
        {"turn": 1, "attempt": 0, "role": "target", "text": " \\boxed{2}.", "n_tokens": 12, "finish": "eos",
         "kept": True, "requests": [REQ | {"role": "target"}]},
    ],
    "started": 1732870000.0, "finished": 1732870003.5, "latency_s": 3.5,
    "answers": {"llm": {"answer": "2", "model": "m"}},
}


def test_round_trip_is_byte_identical_json():
    rec = SampleRecord.from_json(json.loads(json.dumps(RECORD)))
    assert rec.tokens.draft_generated == 40 and rec.tokens.other == {"draft_wasted": 8, "draft_cancelled": 1}
    assert rec.steps[1].decided and rec.steps[1].threshold is None and rec.steps[1].extra == {"pre_generated": True}
    assert not rec.steps[2].decided and rec.steps[2].ppl is None
    assert rec.steps[0].requests[1].kind == "score" and rec.extra == {"answers": RECORD["answers"]}
    assert json.dumps(rec.to_json()) == json.dumps(RECORD)  # same keys, same order, same values


def test_statuses_and_first_attempt_decision():
    assert COMPLETE == {"done", "truncated"}
    assert is_complete(RECORD) and not is_complete(RECORD | {"status": "failed"})
    steps = RECORD["steps"]
    assert [first_attempt_decision(s) for s in steps] == [True, True, False]
    assert not first_attempt_decision(steps[0] | {"attempt": 1})  # a resample is not the turn's decision
    assert Step.from_json(steps[0]).first_attempt_decision
