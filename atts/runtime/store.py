"""Run directory: manifest, one JSON record per sample, summary. Every write is atomic
(temporary file in the same directory, fsync, rename), so a crash at any moment leaves
either the old file or the new one, never half a record.

    <output_dir>/manifest.json    config, versions, git revision, calibration hash
    <output_dir>/samples/q00012-r003.json
    <output_dir>/summary.json

A rerun of the same command resumes: records already on disk are kept and only missing
samples run. A directory holding a run of another config is refused unless forced.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import atts
from atts.errors import RunMismatch

MANIFEST = "manifest.json"


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(o):
    if hasattr(o, "as_dict"):
        return o.as_dict()
    if isinstance(o, (set, tuple)):
        return list(o)
    if isinstance(o, float):
        return None
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sample_key(question_index: int, repeat: int) -> str:
    return f"q{question_index:05d}-r{repeat:03d}"


def git_revision() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


# module name -> distribution name, for the manifest's versions
VERSIONED = {"atts": "atts-runtime", "sglang": "sglang", "torch": "torch", "transformers": "transformers",
             "math_verify": "math-verify"}


def versions() -> dict:
    """Installed versions from the package metadata: importing sglang to read its
    ``__version__`` took 15 s of CPU per run (issue 14: measured in a unit test run)."""
    v = {"python": platform.python_version()}
    for mod, dist in VERSIONED.items():
        try:
            v[mod] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            if mod == "atts":
                v[mod] = atts.__version__  # a source tree pip never installed
    return v


class RunStore:
    def __init__(self, out_dir: str | Path):
        self.dir = Path(out_dir)
        self.samples_dir = self.dir / "samples"

    def check(self, run_hash: str, force: bool = False) -> dict | None:
        """The manifest of the run already in the directory (None if there is none);
        RunMismatch if it was made with another config, unless forced."""
        path = self.dir / MANIFEST
        if not path.exists():
            return None
        try:
            previous = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if previous.get("run_hash") != run_hash and not force:
            raise RunMismatch(
                f"{self.dir} holds a run with a different config (hash {previous.get('run_hash')} != {run_hash}); "
                "use another --output-dir, or --force to add to it anyway")
        return previous

    def open(self, run_hash: str, manifest: dict, force: bool = False) -> dict:
        """Create or reopen the run. Returns the manifest now on disk."""
        previous = self.check(run_hash, force)
        self.samples_dir.mkdir(parents=True, exist_ok=True)
        for stale in self.samples_dir.glob(".*.tmp"):  # a temporary file of a process killed mid-write
            stale.unlink(missing_ok=True)
        path = self.dir / MANIFEST
        m = dict(manifest)
        m["run_hash"] = run_hash
        m["invocations"] = (previous or {}).get("invocations", []) + [{"started": time.time(), "git": git_revision()}]
        m.setdefault("created", (previous or {}).get("created", time.time()))
        atomic_write_json(path, m)
        return m

    def completed(self) -> dict[str, dict]:
        """Records on disk, by sample key. Unreadable files (cannot happen with atomic
        writes, but a user may edit them) are reported and treated as missing."""
        out: dict[str, dict] = {}
        if not self.samples_dir.is_dir():
            return out
        for p in sorted(self.samples_dir.glob("q*-r*.json")):
            try:
                rec = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            out[p.stem] = rec
        return out

    def write_sample(self, record: dict) -> None:
        atomic_write_json(self.samples_dir / f"{record['key']}.json", record)

    def write(self, name: str, obj) -> Path:
        p = self.dir / name
        atomic_write_json(p, obj)
        return p

    def read(self, name: str):
        return json.loads((self.dir / name).read_text())
