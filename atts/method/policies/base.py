"""What every policy is: a frozen ``Params`` dataclass (validated from the config's
``policy`` section) and ``async turn(ctx)``, which appends at least one kept chunk to the
sample, over the shared machinery of `atts.runtime.runner.SampleContext`.

Capabilities are declared by base class, not discovered with ``hasattr``:
``Policy.needs_calibration`` (reads the conformal gate), and ``ProposingPolicy`` (ATTS and
its kin): ``propose`` one attempt and ``resolve`` it, a ``nonconformity`` score per
proposal and a ``calibration_kind``, which is what `atts.commands.calibrate` rolls out."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from atts.errors import ConfigError
from atts.method.conformal import ConformalGate, Decision
from atts.seeds import request_seed


@dataclass(frozen=True)
class NoParams:
    pass


async def target_writes(ctx) -> None:
    """The target writes this turn's chunk (after the kept history), which is kept."""
    t = await ctx.generate("target")
    ctx.keep(t)
    ctx.log(t, kept=True)


class Policy:
    name: ClassVar[str]
    Params: ClassVar[type] = NoParams
    needs_calibration: ClassVar[bool] = False

    def __init__(self, params=None, gate: ConformalGate | None = None):
        self.params = params if params is not None else self.Params()
        self.gate = gate

    async def turn(self, ctx) -> None:
        raise NotImplementedError

    def begin(self, samples: list) -> None:
        """Called once by the runner with the (question, repeat) pairs about to run."""

    def on_sample_end(self, question, repeat: int) -> None:
        """Called by the runner when a sample stops, however it stopped."""


class ProposingPolicy(Policy):
    """A policy whose turn is propose (a draft attempt, scored) then resolve (keep it or
    let the target write). Calibration rolls these two out on the calibration split."""

    async def propose(self, ctx, attempt: int = 0):
        raise NotImplementedError

    async def resolve(self, ctx, prop) -> None:
        raise NotImplementedError

    def nonconformity(self, prop) -> float | None:
        """The calibration score of a proposal: by default the target's PPL of the chunk."""
        return prop.scoring.ppl if prop.scoring is not None else None

    @staticmethod
    def calibration_kind(params) -> str | None:
        """What a calibration score is when it is not the target's PPL of a draft chunk:
        recorded in the calibration file so that files of different kinds never mix."""
        return None


def coin(ctx, tag: str, *parts) -> float:
    """A uniform in [0, 1), seeded by (run seed, tag, question, repeat, turn, parts):
    reruns draw the same coins."""
    s = ctx.state
    return request_seed(ctx.chunking.seed, tag, s.question.id, s.repeat, s.turn, *parts, phase=ctx.chunking.phase) / 2**31


def rule(takeover: bool, group: str, p_value: float | None = None, threshold: float = math.nan) -> Decision:
    """A non-conformal decision in the shape `SampleContext.log` records."""
    return Decision(p_value, threshold, takeover, group)


def _check_rate(key: str, name: str, v: float) -> None:
    if not 0 <= v <= 1:
        raise ConfigError(f"{key}.{name}: must be in [0, 1], got {v}")


@dataclass(frozen=True)
class AlphaParams:
    alpha: float = 0.4

    def validate(self, key: str) -> None:
        _check_rate(key, "alpha", self.alpha)
