# `make run`: set up and run the main job (train a model on the embedded demo corpus; under a minute on 2 idle cores, 3 when busy).
# `make test`: set up and run the test suite. Both create .venv on first use.
# `make convert-demo`: convert the bundled original checkpoint and reconstruct a speech clip with it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT := outputs

.PHONY: setup run convert-demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/distill-hf train --output-dir $(OUT)/distill-train

convert-demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/distill-hf convert --checkpoint tests/fixtures/distill-v2/model.distill \
		--output-dir $(OUT)/distill-v2-hf --overwrite
	HF_HUB_OFFLINE=1 $(BIN)/distill-hf reconstruct examples/speech.wav --model $(OUT)/distill-v2-hf \
		--save-input $(OUT)/input.wav --output $(OUT)/reconstruction.wav

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(OUT) .pytest_cache .hypothesis
