# `make run`: the main job (calibrate + evaluate ATTS on the CPU testbed, servers started
# and stopped by atts). `make test`: the test suite (starts its own SGLang servers).
.PHONY: install run test measure clean-results

install:
	bash scripts/install.sh

run: install
	.venv/bin/atts run --config configs/testbed.yaml

test: install
	.venv/bin/python -m pytest -q tests

measure: install
	.venv/bin/python scripts/measure_tiny_models.py

clean-results:
	rm -rf results
