"""Split-conformal takeover test for draft chunks.

A draft chunk's nonconformity score is the target's perplexity of it. Given n
calibration scores S_1..S_n from the same process, a new score s gets the conformal
p-value

    p(s) = (1 + #{i : S_i >= s}) / (n + 1)

and the target takes over when p(s) <= alpha. Equivalently (ties included): take over
iff s > q_hat, where q_hat is the k-th smallest calibration score with
k = ceil((n + 1)(1 - alpha)); if k > n, never take over.

Guarantee: if the calibration scores and the new score are exchangeable,
P(takeover) <= alpha, and if the scores are almost surely distinct,
P(takeover) >= alpha - 1/(n + 1). (P(takeover) = floor((n+1) alpha) / (n+1).)

Ties. Scores are quantized to ``resolution`` (1e-5 in PPL) before comparison: below
that, a PPL is float32 noise whose size depends on how the server batched the request,
which differs between calibration and evaluation (measured on the testbed: answer
chunks all score 1.00001 +- 3e-6, and unquantized their takeover rate drifted from 0.7
to 0.875). Tied scores make the rule above conservative (rate below alpha). With a
uniform ``u`` per decision, the smoothed (randomised) p-value

    p(s, u) = (#{S_i > s} + u * (1 + #{S_i = s})) / (n + 1)

has an exact rate. If the n + 1 scores are exchangeable and u ~ Uniform(0, 1) is drawn
independently of them, p(s, u) is exactly Uniform(0, 1), ties or not, so

    P(takeover) = P(p(s, u) <= alpha) = alpha    exactly, for every alpha in (0, 1)

(not floor((n+1) alpha)/(n+1): the randomisation also fills the gap between the
achievable levels k/(n+1)). u = 1 is the deterministic rule above, whose rate is
floor((n+1) alpha)/(n+1) for distinct scores and less with ties
(tests/unit/test_conformal_rate.py measures both).

Three groupings decide which calibration scores a chunk is compared with:
- ``marginal``: all of them (the paper's default);
- ``per_question``: the question's own scores (the paper's "conditional"; calibrates on
  the evaluated questions);
- ``per_turn``: the scores of the same turn, calibrated sequentially so the rate holds at
  every turn (see `atts.calibrate`).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from atts.errors import CalibrationError
from atts.runtime.store import atomic_write_json

GROUPINGS = ("marginal", "per_question", "per_turn")
FORMAT = "atts-calibration/1"


def turn_key(turn: int) -> str:
    """The per-turn group key of ``turn`` (``turn:3``)."""
    return f"turn:{turn}"


def key_turn(key: str) -> int:
    """The turn of a per-turn group key (``turn:3`` -> 3)."""
    return int(key.split(":")[1])


@dataclass(frozen=True)
class ConformalCalibration:
    """Immutable: sorted (quantized) calibration scores and the level alpha."""

    scores: tuple[float, ...]
    alpha: float
    resolution: float | None = None  # quantize scores to this step (None: exact floats)

    def __post_init__(self):
        if not self.scores:
            raise CalibrationError("no calibration scores")
        if not 0 < self.alpha < 1:
            raise CalibrationError(f"alpha must be in (0, 1), got {self.alpha}")
        if any(not math.isfinite(s) for s in self.scores):
            raise CalibrationError("calibration scores must be finite")
        object.__setattr__(self, "scores", tuple(sorted(self.q(float(s)) for s in self.scores)))

    def q(self, s: float) -> float:
        return round(s / self.resolution) * self.resolution if self.resolution else s

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def rank(self) -> int:
        """k = ceil((n + 1)(1 - alpha)), the rank of the threshold score."""
        return math.ceil((self.n + 1) * (1 - self.alpha) - 1e-12)

    @property
    def quantile(self) -> float:
        """q_hat: take over iff score > q_hat (inf: never)."""
        k = self.rank
        return self.scores[k - 1] if k <= self.n else math.inf

    def p_value(self, s: float, u: float = 1.0) -> float:
        s = self.q(s)
        lo, hi = bisect.bisect_left(self.scores, s), bisect.bisect_right(self.scores, s)
        greater, equal = self.n - hi, hi - lo
        return (greater + u * (1 + equal)) / (self.n + 1)

    def takeover(self, s: float, u: float = 1.0) -> bool:
        return self.p_value(s, u) <= self.alpha

    @property
    def expected_rate(self) -> float:
        """floor((n+1) alpha) / (n+1): the exact takeover probability for distinct scores."""
        return math.floor((self.n + 1) * self.alpha + 1e-12) / (self.n + 1)


@dataclass(frozen=True)
class Decision:
    p_value: float
    threshold: float
    takeover: bool
    group: str


@dataclass(frozen=True)
class ConformalGate:
    """Maps (question, turn) to its calibration and decides."""

    grouping: str
    groups: Mapping[str, ConformalCalibration]

    def key(self, question_id: str, turn: int) -> str:
        if self.grouping == "marginal":
            return "all"
        if self.grouping == "per_question":
            k = f"q:{question_id}"
            if k not in self.groups:
                raise CalibrationError(f"per-question calibration has no scores for question {question_id!r} "
                                       "(calibrate on the evaluated questions)")
            return k
        turns = sorted(key_turn(k) for k in self.groups)
        # the last group covers every later turn (per-turn calibration pools their scores into it:
        # atts.commands.calibrate.TurnGroups)
        return turn_key(max((x for x in turns if x <= turn), default=turns[0]))

    def decide(self, score: float, question_id: str, turn: int, u: float = 1.0) -> Decision:
        k = self.key(question_id, turn)
        cal = self.groups[k]
        p = cal.p_value(score, u)
        return Decision(p, cal.quantile, p <= cal.alpha, k)


@dataclass
class CalibrationFile:
    """What ``python -m atts.calibrate`` writes: scores per group plus the settings they
    were measured under, and a hash of both."""

    grouping: str
    scores: dict[str, list[float]]
    meta: dict
    alpha: float | None = None  # per_turn: the alpha used to reach later turns
    created: float = field(default_factory=time.time)

    @property
    def hash(self) -> str:
        payload = json.dumps({"grouping": self.grouping, "scores": self.scores, "meta": self.meta,
                              "alpha": self.alpha}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def gate(self, alpha: float, resolution: float | None = 1e-5) -> ConformalGate:
        if self.grouping == "per_turn" and self.alpha is not None and abs(alpha - self.alpha) > 1e-12:
            raise CalibrationError(f"per-turn calibration was made at alpha={self.alpha}, not {alpha}: "
                                   "later turns depend on it; recalibrate with this alpha")
        return ConformalGate(self.grouping, {k: ConformalCalibration(tuple(v), alpha, resolution)
                                             for k, v in self.scores.items()})

    def to_json(self) -> dict:
        return {"format": FORMAT, "grouping": self.grouping, "alpha": self.alpha, "created": self.created,
                "hash": self.hash, "meta": self.meta, "n": {k: len(v) for k, v in self.scores.items()},
                "scores": self.scores}

    def save(self, path: str | Path) -> None:
        atomic_write_json(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "CalibrationFile":
        p = Path(path)
        if not p.is_file():
            raise CalibrationError(f"calibration file not found: {p} (run `python -m atts.calibrate --config ...` first)")
        try:
            d = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CalibrationError(f"{p}: not a calibration file ({e})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise CalibrationError(f"{p}: not an atts calibration file (format {d.get('format') if isinstance(d, dict) else None!r})")
        if d.get("grouping") not in GROUPINGS:
            raise CalibrationError(f"{p}: unknown grouping {d.get('grouping')!r}")
        scores = d.get("scores")
        if not isinstance(scores, dict) or not scores or not all(isinstance(v, list) and v for v in scores.values()):
            raise CalibrationError(f"{p}: no scores")
        f = cls(d["grouping"], {k: [float(x) for x in v] for k, v in scores.items()}, d.get("meta") or {},
                d.get("alpha"), d.get("created", 0.0))
        if d.get("hash") and d["hash"] != f.hash:
            raise CalibrationError(f"{p}: hash mismatch (file edited or corrupted)")
        return f

    def check_compatible(self, expected_meta: dict, path: str | Path = "calibration") -> None:
        """Refuse a calibration measured with other models, chunking or sampling."""
        diffs = [f"{k}: calibration has {self.meta.get(k)!r}, run has {v!r}"
                 for k, v in expected_meta.items() if self.meta.get(k) != v]
        if diffs:
            raise CalibrationError(f"{path} does not match this run (use --force to override):\n  " + "\n  ".join(diffs))
