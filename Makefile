# The two commands of the README: `make demo` and `make test`. Both work from a clean clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := demo
comma := ,
space := $(empty) $(empty)

# Keep every intermediate file (stage outputs are reused by later runs, never deleted).
.SECONDARY:

.PHONY: install demo test lint format browser-deps clean bench bench-env test-audiocraft mini-models translations

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
	bash tests/ensure_services.sh

# What the software says to participants, per language (docs/study-app.md, "Adding a
# language"): extract the marked texts, update each language's .po (NEW_LANGUAGE=xx starts
# a new one), compile the .mo files the app and the builder read.
translations: $(STAMP)
	for pkg in study_app stimuli_builder; do \
		(cd $$pkg && ../$(BIN)/pybabel extract -F babel.cfg -k N_ --no-location --omit-header \
			-o translations/messages.pot . ) || exit 1; \
		if [ -n "$(NEW_LANGUAGE)" ] && [ ! -e $$pkg/translations/$(NEW_LANGUAGE) ]; then \
			$(BIN)/pybabel init -i $$pkg/translations/messages.pot -d $$pkg/translations \
				-l $(NEW_LANGUAGE) --no-wrap || exit 1; \
		fi; \
		$(BIN)/pybabel update -i $$pkg/translations/messages.pot -d $$pkg/translations --no-wrap \
			--no-fuzzy-matching --ignore-obsolete || exit 1; \
		$(BIN)/pybabel compile -d $$pkg/translations --statistics || exit 1; \
		rm $$pkg/translations/messages.pot; \
	done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: $(STAMP) browser-deps lint
	$(BIN)/pytest

# The whole pipeline on the embedded synthetic corpus; each stage appends here. File
# targets make a rerun reuse the stages that already finished.
RUN := $(DEMO)/runs/demo
DEMO_LAYERS := 1 3

$(DEMO)/corpus/run.json: | $(STAMP)
	$(BIN)/sae-core synth-corpus --out $(DEMO)/corpus --tracks 24 --seconds 10 --seed 0

# The shipped mini MusicGen (mini-models/, trained on the CPU by 'make mini-models'):
# a model that has learned the corpus, so the clips participants hear differ.
MODEL := mini-models/musicgen
# The mini CLAP trained by `make mini-models` (a random one labelled every feature alike).
CLAP := mini-models/clap

$(RUN)/acts/run.json: $(DEMO)/corpus/run.json $(MODEL)/model.safetensors
	$(BIN)/sae-core extract --model $(MODEL) --corpus $(DEMO)/corpus \
		--layers $(subst $(space),$(comma),$(DEMO_LAYERS)) --out $(RUN)/acts

$(RUN)/sae/layer_%/metrics.json: $(RUN)/acts/run.json
	$(BIN)/sae-core train --acts $(RUN)/acts/layer_$* --out $(RUN)/sae/layer_$* \
		--k 8 --expansion 4 --batch-size 512 --epochs 10 --lr 2e-3

$(RUN)/features/layer_%/run.json: $(RUN)/sae/layer_%/metrics.json
	$(BIN)/sae-core features --sae $(RUN)/sae/layer_$* --acts $(RUN)/acts/layer_$* \
		--corpus $(DEMO)/corpus --out $(RUN)/features/layer_$* --top 5

$(RUN)/steering/run.json: $(RUN)/features/layer_3/run.json
	printf 'Simple melody\n' > $(DEMO)/prompts.txt
	$(BIN)/sae-core steer --model $(MODEL) --sae $(RUN)/sae/layer_3 --features top:3 \
		--features-table $(RUN)/features/layer_3/features.parquet --relative --strengths 1 \
		--prompts $(DEMO)/prompts.txt --seeds 0,1,2 --duration 4 --out $(RUN)/steering

$(RUN)/labels.parquet: $(RUN)/features/layer_3/run.json $(CLAP)/config.json
	$(BIN)/sae-core label --features $(RUN)/features/layer_3 --labelers descriptors,clap-vocab \
		--corpus $(DEMO)/corpus --clap $(CLAP) --max-features 12 --out $@

$(RUN)/summary/summary.md: $(RUN)/labels.parquet $(STUDY)
	$(BIN)/sae-core summarize $(RUN)

$(RUN)/steering/steering_eval.parquet: $(RUN)/steering/run.json $(RUN)/labels.parquet $(STUDY)
	$(BIN)/sae-core steering-eval $(RUN) --clap $(CLAP)

STUDY := $(DEMO)/studies/demo
DEMO_DB := sqlite:///$(abspath $(DEMO))/study.sqlite
DEMO_PORT ?= 5000
DEMO_SIM_PORT ?= 5099
$(STUDY)/checksums.txt: $(RUN)/labels.parquet $(RUN)/steering/run.json $(wildcard examples/demo-study/*)
	$(BIN)/stimuli-builder build examples/demo-study/study.toml --bundle $(RUN) --out $(STUDY) --force

# A fresh database with the study imported, 16 bot participants through a real server,
# their export: the data the report and the dashboard show.
EXPORT := $(DEMO)/exports/demo.parquet
REPORT := $(DEMO)/reports/demo
$(EXPORT): $(STUDY)/checksums.txt
	rm -f $(DEMO)/study.sqlite*
	DATABASE_URL=$(DEMO_DB) $(BIN)/study-app init-db
	DATABASE_URL=$(DEMO_DB) $(BIN)/study-app import $(STUDY)
	# The bots' server answers them at once (LISTEN_FACTOR=0); the participants' server below checks.
	DATABASE_URL=$(DEMO_DB) LISTEN_FACTOR=0 $(BIN)/study-app serve --port $(DEMO_SIM_PORT) > $(DEMO)/sim-server.log 2>&1 & \
		server=$$!; trap "kill $$server" EXIT; sleep 2; \
		DATABASE_URL=$(DEMO_DB) $(BIN)/study-app simulate demo --url http://127.0.0.1:$(DEMO_SIM_PORT) \
			--participants 16 --concurrency 4 --accuracy 0.75 --steer-accuracy 0.6 --fail-screening 0.1 --chaos
	DATABASE_URL=$(DEMO_DB) $(BIN)/study-app export demo --format parquet --out $@

$(REPORT)/report.html: $(EXPORT)
	$(BIN)/study-analysis report --export $< --study $(STUDY) --out $(REPORT)

demo: $(STAMP) $(foreach l,$(DEMO_LAYERS),$(RUN)/features/layer_$(l)/run.json) $(RUN)/steering/run.json \
		$(RUN)/labels.parquet $(RUN)/summary/summary.md $(RUN)/steering/steering_eval.parquet $(STUDY)/checksums.txt \
		$(REPORT)/report.html
	$(BIN)/stimuli-builder validate $(DEMO)/corpus $(RUN)/acts/layer_1/index.parquet $(RUN)/features \
		$(RUN)/steering $(RUN)/labels.parquet $(STUDY)
	$(BIN)/sae-core metrics $(RUN)/sae
	$(BIN)/stimuli-builder check $(STUDY)
	@echo "demo outputs in $(DEMO)/: corpus/, models/, runs/demo/{acts,sae,features,steering,labels.parquet,summary}, studies/demo"
	@pw=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(12))'); \
		echo "$$pw" | DATABASE_URL=$(DEMO_DB) $(BIN)/study-app create-admin admin --password-stdin >/dev/null; \
		echo; echo "participant entry: http://127.0.0.1:$(DEMO_PORT)/s/demo"; \
		echo "admin dashboard:   http://127.0.0.1:$(DEMO_PORT)/admin  (user admin, password $$pw; shown once)"; \
		echo "report:            file://$(abspath $(REPORT))/report.html"; echo
	DATABASE_URL=$(DEMO_DB) $(BIN)/study-app serve --port $(DEMO_PORT)

# Benchmarks against peers need the peer installed beside this project.
# The peers' requirements must not replace the CPU torch: pip is held to the torch it
# installed first (a constraints file). dictionary-learning's nnsight pulls a torchvision
# built for another torch ("operator torchvision::nms does not exist" when transformers,
# and so sparsify, is imported); none of the peers needs it, so it is removed.
bench-env: $(STAMP)
	test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install --quiet torch==2.13.0 || .venv-bench/bin/python -m pip install --quiet 'torch>=2.2'
	.venv-bench/bin/python -c 'import torch; print(f"torch=={torch.__version__}")' > .venv-bench/constraints.txt
	.venv-bench/bin/python -m pip install --quiet -c .venv-bench/constraints.txt sae-lens eai-sparsify dictionary-learning
	.venv-bench/bin/python -m pip install --quiet -c .venv-bench/constraints.txt -e .
	.venv-bench/bin/python -m pip uninstall --quiet --yes torchvision
	.venv-bench/bin/python -c 'import torch, sparsify, sae_lens, dictionary_learning, sae_core; print("bench-env: torch", torch.__version__)'

# The optional audiocraft backend needs torch 2.9.1 + torchaudio (docs/models.md).
.venv-audiocraft/.installed: pyproject.toml
	test -x .venv-audiocraft/bin/python || $(PYTHON) -m venv .venv-audiocraft
	.venv-audiocraft/bin/python -m pip install --quiet torch==2.9.1 'torchaudio==2.9.*'
	.venv-audiocraft/bin/python -m pip install --quiet -e '.[dev]'
	.venv-audiocraft/bin/python -m pip install --quiet --no-deps audiocraft==1.3.0 xformers==0.0.33.post1
	.venv-audiocraft/bin/python -m pip install --quiet einops julius omegaconf num2words flashy \
		torchmetrics av spacy librosa
	touch $@

# Retrain the shipped weights in mini-models/ from nothing (about an hour on 2 cores):
# the corpus (build/mini-corpus), the fitted codec and the mini MusicGen. The recipe is
# sae_core/mini/recipe.py; tests/sae_core/test_shipped_models.py checks the files against it.
mini-models: $(STAMP)
	$(BIN)/sae-core mini-models --out mini-models

test-audiocraft: .venv-audiocraft/.installed
	.venv-audiocraft/bin/python -m pytest tests/sae_core/test_audiocraft.py

bench: bench-env
	.venv-bench/bin/python benchmarks/bench_sae_train.py --quick
	$(BIN)/python benchmarks/bench_hooks.py --quick
	$(BIN)/python benchmarks/bench_app.py --quick
	$(BIN)/python benchmarks/bench_analysis.py --quick
	$(BIN)/python benchmarks/bench_export.py --quick

clean:
	rm -rf $(DEMO) instance .pytest_cache .mypy_cache .ruff_cache
