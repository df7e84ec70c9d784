"""The real-server testbeds: committed draft and target checkpoints served by SGLang on
CPU on free 127.0.0.1 ports (``launch_testbed``), and a ``Testbed`` handle that points
the testbed's config at them. Two testbeds (``KINDS``):

- ``chain`` (the default): configs/testbed.yaml, models/chain-* (the reasoning-shaped
  task, two vocabularies, append mode): every server test, of the method and of the
  runtime's mechanics (stops, faults, routing, resume; the ``testbed`` fixture);
- ``arith``: configs/testbed_arith.yaml, models/tiny-* (one 15-token step a chunk, one
  shared tokenizer): the first testbed, kept for the figures recorded on it
  (docs/testbed_results.md) and no longer tested.

Used by tests/conftest.py and available to scripts. Also the fake secrets a run must never
write."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

from atts.config import REPO_ROOT, load_config, with_overrides
from atts.serving.sglang import ServerGroup, ServerSpec, _pid_alive

ROOT = REPO_ROOT
MODELS = ROOT / "models"
SHARED = Path(os.environ.get("ATTS_SHARED_DIR") or ROOT.parent / "shared")  # a worktree elsewhere can point at it
ROLE_MODELS = {"draft": "chain-draft", "target": "chain-target"}


@dataclasses.dataclass(frozen=True)
class Kind:
    """One testbed: its checkpoints (under models/), its config and its servers' sizes."""

    models: dict
    config: str
    context_length: int
    max_total_tokens: int | None = None


KINDS = {
    "chain": Kind(ROLE_MODELS, "testbed.yaml", 4096, 65536),
    "arith": Kind({"draft": "tiny-draft", "target": "tiny-target"}, "testbed_arith.yaml", 512),
}

FAKE_SECRETS = {"OPENAI_API_KEY": "sk-atts-FAKE-0d5e7c1b9a4f4e2b8c6d", "HF_TOKEN": "hf_" + "attsFAKEtoken9Q2w7E4r",  # split: no key-like literal in the tree
                "ATTS_API_KEY": "atts-FAKE-key-3b8e1f"}


@dataclasses.dataclass
class Testbed:
    urls: dict
    servers: list
    log_dir: Path
    kind: str = "chain"

    def config(self, tmp_path: Path, sets: list[str] | None = None, **overrides):
        """The testbed's config (``KINDS[kind].config``) pointed at the running servers,
        writing under tmp_path."""
        base = ["draft.launch=false", "target.launch=false",
                f"draft.urls=[{self.urls['draft']}]", f"target.urls=[{self.urls['target']}]",
                f"calibration.path={tmp_path / 'calibration.json'}"]
        overrides.setdefault("output_dir", str(tmp_path / "run"))
        return with_overrides(load_config(ROOT / "configs" / KINDS[self.kind].config), sets=base + list(sets or []),
                              **overrides)


def missing_checkpoints(kind: str = "chain") -> list[Path]:
    return [MODELS / m for m in KINDS[kind].models.values() if not (MODELS / m / "model.safetensors").is_file()]


@contextlib.contextmanager
def launch_testbed(log_dir: Path, timeout: float = 300, kind: str = "chain"):
    """Starts the testbed's two servers (1 CPU thread each) for the block; on exit stops
    their process trees and raises if any process is left."""
    k = KINDS[kind]
    specs = [ServerSpec(role, str(MODELS / m), context_length=k.context_length, max_total_tokens=k.max_total_tokens,
                        cpu_threads=1) for role, m in k.models.items()]
    group = ServerGroup(specs, log_dir, timeout=timeout)
    urls = group.__enter__()
    try:
        yield Testbed(urls, list(group.servers), log_dir, kind)
    finally:
        group.__exit__(None, None, None)
        left = [s.pid for s in group.servers if _pid_alive(s.pid)]
        assert not left, f"server processes left after teardown: {left}"


def assert_no_secret(out_dir: Path, captured: str = "") -> None:
    """No FAKE_SECRETS value in ``captured`` nor in any file under ``out_dir``."""
    files = [p for p in Path(out_dir).rglob("*") if p.is_file()]
    assert files
    for secret in FAKE_SECRETS.values():
        assert secret not in captured
        for p in files:
            assert secret.encode() not in p.read_bytes(), f"{secret} written to {p}"
