"""Where the repository is (models/, configs/, .venv-vllm/ are looked up there). Layer 0:
imports nothing from atts, so any layer may use it."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_TARGETS = REPO_ROOT / "configs" / "bench_targets.yaml"  # planning targets of `atts bench`
