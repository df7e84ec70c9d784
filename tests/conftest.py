"""Shared fixtures, delegating to atts.testing. `testbed` (configs/testbed.yaml's
reasoning-shaped pair, models/chain-*) starts real SGLang servers (CPU) once per test
session on free 127.0.0.1 ports and kills their process trees at the end; every server
test, of the method and of the runtime's mechanics, runs on it. Everything under
tests/server/ is marked ``server`` by its folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from atts.testing.testbed import MODELS, ROOT, SHARED, Testbed, launch_testbed, missing_checkpoints

__all__ = ["MODELS", "ROOT", "SHARED", "Testbed"]


def pytest_collection_modifyitems(config, items):
    """Everything under tests/server/ is marked ``server`` by its folder, so ``-m "not server"``
    can never start a server whatever a file forgets to declare."""
    server_dir = Path(__file__).resolve().parent / "server"
    for item in items:
        if server_dir in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def testbed(tmp_path_factory):
    missing = missing_checkpoints()
    if missing:
        pytest.fail(f"missing committed checkpoint {missing[0]}")
    with launch_testbed(tmp_path_factory.mktemp("server-logs")) as tb:
        yield tb


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


def gate_decision(gate, seed: int, rec: dict, step: dict):
    """What the conformal ``gate`` decides for a recorded draft ``step`` of sample record
    ``rec``: its PPL, its turn's calibration and the seeded tie-break ATTS draws
    (`ATTS.decide`, `randomize_ties`), so that a test can check each recorded decision."""
    from atts.seeds import request_seed

    u = request_seed(seed, "tie", rec["question_id"], rec["repeat"], step["turn"], step["attempt"]) / 0x7FFFFFFF
    return gate.decide(step["ppl"], rec["question_id"], step["turn"], u)


def measure_script():
    """`scripts/measure_testbed_models.py` as a module (a script, not part of the package):
    the unit tests of its figures and the server test of its one-takeover rollouts load it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("measure_testbed_models", ROOT / "scripts/measure_testbed_models.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m
