"""The one number formatter of tables and summaries (bench.md, compare.md, report.md and
.html, the printed summary): a float with fixed digits, an int or text as it is, a
missing value as a dash; an estimate with its interval as ``v [low, high]``."""

from __future__ import annotations

DASH = "-"


def num(v, digits: int = 3, missing: str = DASH) -> str:
    """``v`` for a table cell: floats with ``digits`` decimals, None as ``missing``."""
    if v is None:
        return missing
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def with_ci(v, ci, digits: int = 3, ci_digits: int | None = None, missing: str = DASH) -> str:
    """``v [low, high]`` (``ci`` a pair, or None: ``v`` alone)."""
    if v is None:
        return missing
    d = digits if ci_digits is None else ci_digits
    if not ci or ci[0] is None or ci[1] is None:
        return num(v, digits, missing)
    return f"{num(v, digits)} [{num(float(ci[0]), d)}, {num(float(ci[1]), d)}]"


def rate_ci(rate: dict | None, digits: int = 3, ci_digits: int | None = None, missing: str = DASH) -> str:
    """A summary's rate object (``rate``, ``low``, ``high``, ``n``) as ``rate [low, high]``;
    ``missing`` when it has no decisions."""
    if not rate or not rate.get("n"):
        return missing
    return with_ci(rate["rate"], (rate.get("low"), rate.get("high")), digits, ci_digits, missing)
