# The two commands of the README: `make demo` and `make test`. Both work from a clean clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo

.PHONY: install demo test lint format browser-deps clean

install: $(STAMP)

# torch goes in first: the CPU build (2.13.0) sits on local disk here, and once it
# is installed the project's "torch>=2.2" is satisfied instead of pulling a
# multi-GB CUDA build. Elsewhere, the fallback takes whatever torch pip finds.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0 \
		|| $(BIN)/python -m pip install --quiet 'torch>=2.2'
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

browser-deps:
	bash tests/ensure_chromium.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: $(STAMP) browser-deps lint
	$(BIN)/pytest

# The whole pipeline on the embedded synthetic corpus; each stage appends here.
demo: $(STAMP)
	$(BIN)/sae-core synth-corpus --out $(DEMO)/corpus --tracks 24 --seconds 10 --seed 0
	$(BIN)/stimuli-builder validate $(DEMO)
	@echo "demo outputs in $(DEMO)/: corpus/ (24 tracks, metadata.csv, concepts.csv, run.json)"

clean:
	rm -rf $(DEMO) instance .pytest_cache .mypy_cache .ruff_cache
