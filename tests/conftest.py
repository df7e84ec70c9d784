"""Shared fixtures. `testbed` starts the real SGLang servers (CPU, tiny models) once per
test session on free 127.0.0.1 ports and kills their process trees at the end."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SHARED = Path(os.environ.get("ATTS_SHARED_DIR") or ROOT.parent / "shared")  # a worktree elsewhere can point at it


@dataclasses.dataclass
class Testbed:
    urls: dict
    servers: list
    log_dir: Path

    def config(self, tmp_path: Path, sets: list[str] | None = None, **overrides):
        """configs/testbed.yaml pointed at the running servers, writing under tmp_path."""
        from atts.config import load_config, with_overrides

        base = ["draft.launch=false", "target.launch=false",
                f"draft.urls=[{self.urls['draft']}]", f"target.urls=[{self.urls['target']}]",
                f"calibration.path={tmp_path / 'calibration.json'}"]
        overrides.setdefault("output_dir", str(tmp_path / "run"))
        return with_overrides(load_config(ROOT / "configs" / "testbed.yaml"), sets=base + list(sets or []),
                              **overrides)


def pytest_collection_modifyitems(config, items):
    """Everything under tests/server/ is marked ``server`` by its folder, so ``-m "not server"``
    can never start a server whatever a file forgets to declare."""
    server_dir = Path(__file__).resolve().parent / "server"
    for item in items:
        if server_dir in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def testbed(tmp_path_factory):
    from atts.serving.sglang import ServerGroup, ServerSpec, _pid_alive

    for m in ("tiny-draft", "tiny-target"):
        if not (MODELS / m / "model.safetensors").is_file():
            pytest.fail(f"missing committed checkpoint {MODELS / m}")
    log_dir = tmp_path_factory.mktemp("server-logs")
    specs = [ServerSpec("draft", str(MODELS / "tiny-draft"), context_length=512, cpu_threads=1),
             ServerSpec("target", str(MODELS / "tiny-target"), context_length=512, cpu_threads=1)]
    group = ServerGroup(specs, log_dir, timeout=300)
    urls = group.__enter__()
    try:
        yield Testbed(urls, list(group.servers), log_dir)
    finally:
        group.__exit__(None, None, None)
        left = [s.pid for s in group.servers if _pid_alive(s.pid)]
        assert not left, f"server processes left after teardown: {left}"


@pytest.fixture
def shared_datasets():
    d = SHARED / "datasets"
    if not d.is_dir():
        pytest.skip(f"../shared/datasets not present ({d}); it exists in CI, not in a user's clone")
    return d


@pytest.fixture
def shared_traces():
    d = SHARED / "reference" / "atts_traces"
    if not d.is_dir():
        pytest.skip(f"../shared/reference/atts_traces not present ({d}); it exists in CI, not in a user's clone")
    return d
