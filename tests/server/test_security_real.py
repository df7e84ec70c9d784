"""Security against a real run: secrets in the environment are never written by it nor
printed (the fake keys are in atts.testing.testbed.FAKE_SECRETS)."""

import os
import subprocess
import sys

from atts.testing.testbed import FAKE_SECRETS, ROOT, assert_no_secret


def test_a_run_never_writes_the_api_keys(testbed, tmp_path):
    """A real run with recognisable fake keys in its environment: neither its output nor
    any file it wrote contains them."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "atts.evaluate", "--config", str(ROOT / "configs/testbed.yaml"), "--policy",
           "draft_only", "--limit", "2", "--samples-per-question", "1", "--output-dir", str(out), "--no-progress"]
    for s in ("draft.launch=false", "target.launch=false", f"draft.urls=[{testbed.urls['draft']}]",
              f"target.urls=[{testbed.urls['target']}]",
              "draft.api_key_env=ATTS_API_KEY", "target.api_key_env=ATTS_API_KEY"):  # sent, ignored by a keyless server
        cmd += ["--set", s]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, **FAKE_SECRETS})
    assert r.returncode == 0, r.stderr[-3000:]
    assert_no_secret(out, r.stdout + r.stderr)
