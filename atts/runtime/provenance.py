"""What a run was made from, for its manifest (issue 14): the git revision of the atts
source and whether its working tree held uncommitted changes.

`git_state` asks git about the directory that holds the atts package; an installed
package (no checkout) or a machine without git gives None, not an error: provenance must
never stop a run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(SOURCE_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout if r.returncode == 0 else None


def git_state() -> dict | None:
    """``{"revision": sha, "dirty": bool}``; ``dirty`` counts tracked files changed
    (untracked files, e.g. results, do not make a tree dirty)."""
    rev = _git("rev-parse", "HEAD")
    if rev is None:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"revision": rev.strip(), "dirty": None if status is None else bool(status.strip())}
