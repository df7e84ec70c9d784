"""`atts simulate-fit --probe`: the iteration costs recovered from the probe's
measurements (synthetic ones made from known coefficients), and the command's errors."""

import pytest

from atts.cli import main
from atts.sim.probe import DECODE_BATCHES, PREFILL_TOKENS, fit_probe


def test_fit_probe_recovers_known_coefficients():
    step, seq, tok, overhead = 0.004, 0.0007, 0.00002, 0.003
    decode = {b: step + seq * b for b in DECODE_BATCHES}  # one decode iteration at batch b
    prefill = {p: overhead + step + tok * p for p in PREFILL_TOKENS}  # a prefill-only iteration + overhead
    c = fit_probe(decode, prefill)
    assert c["step"] == pytest.approx(step) and c["seq"] == pytest.approx(seq)
    assert c["tok"] == pytest.approx(tok) and c["request_overhead"] == pytest.approx(overhead)


def test_fit_probe_clamps_negative_terms():
    c = fit_probe({1: 0.005, 8: 0.005, 32: 0.0049}, {128: 0.001, 1024: 0.002})
    assert c["seq"] == 0.0 and c["request_overhead"] == 0.0 and c["tok"] > 0


@pytest.mark.parametrize("argv", [["simulate-fit", "--probe", "--output", "x.yaml"],
                                  ["simulate-fit", "--output", "x.yaml"]])
def test_probe_argument_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "simulate-fit" in capsys.readouterr().err
