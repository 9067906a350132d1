# autocnn — run `make help` for the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PORT ?= 5000
DOCS_PORT ?= 8000
HOST ?= 127.0.0.1
BUDGET ?= 60m
DB ?=

.DEFAULT_GOAL := help
.PHONY: help install demo fashion-mnist test test-fast docs bench gpu-check lint ui mlflow-server clean clean-runs

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	@echo "Creating $(VENV) and installing autocnn with TensorFlow, KerasTuner, MLflow and its test tools (1-2 minutes the first time)..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "pip install -e '.[test]' (its log: $(VENV)/install.log)"
	@$(BIN)/python -m pip install --progress-bar off -e '.[test]' > $(VENV)/install.log 2>&1 \
		|| { tail -n 20 $(VENV)/install.log; echo "the install failed: see $(VENV)/install.log"; exit 1; }
	@touch $@
	@echo "Installed: $$(grep -c '^Collecting' $(VENV)/install.log) packages into $(VENV)."

install: $(INSTALLED) ## Create .venv and install autocnn with its test tools

demo: $(INSTALLED) ## Run pipelines/digits.yaml: search, evaluate, register, export (digits)
	$(BIN)/autocnn run pipelines/digits.yaml

fashion-mnist: $(INSTALLED) ## Run pipelines/fashion_mnist.yaml: the full Fashion-MNIST job
	$(BIN)/autocnn run pipelines/fashion_mnist.yaml

test: $(INSTALLED) ## Run the test suite (it never writes to this repository's mlruns/)
	$(BIN)/python -m pytest

test-fast: $(INSTALLED) ## Run the unit tests alone, without the end-to-end searches (a few minutes)
	$(BIN)/python -m pytest -m "not slow"

docs: $(INSTALLED) ## Serve the documentation on http://127.0.0.1:8000 (DOCS_PORT=... to change)
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

bench: $(INSTALLED) ## Run the benchmarks: Fashion-MNIST against the baselines (BUDGET=60m each), input throughput, feature cache, folder loading
	$(BIN)/python benchmarks/fashion_mnist.py --budget $(BUDGET)
	$(BIN)/python benchmarks/throughput.py
	$(BIN)/python benchmarks/transfer_features.py
	$(BIN)/python benchmarks/folder_loading.py --images 20000

gpu-check: $(INSTALLED) ## On a machine with an NVIDIA GPU: precision and XLA speeds, memory growth, a 5-minute search (about 8 minutes)
	bash benchmarks/gpu_check.sh

lint: $(INSTALLED) ## Check the code with ruff
	$(BIN)/ruff check autocnn tests benchmarks

ui: $(INSTALLED) ## Open the MLflow UI over mlruns/ on http://127.0.0.1:5000 (PORT=... to change)
	$(BIN)/autocnn ui --port $(PORT)

mlflow-server: $(INSTALLED) ## MLflow tracking server for a team: over mlruns/, or DB=postgresql://USER:PASS@HOST/DB; HOST=0.0.0.0 for other machines
	@# Not echoed, and the database URI passed in the environment: its password stays off screen.
	@$(if $(DB),AUTOCNN_DB='$(DB)' )$(BIN)/autocnn server --artifacts $(CURDIR)/mlruns/artifacts \
		--host $(HOST) --port $(PORT)

clean: ## Remove the virtual environment and build leftovers (keeps mlruns/)
	rm -rf $(VENV) build *.egg-info .pytest_cache

clean-runs: ## Delete every run, model and tuner project in mlruns/
	find mlruns -mindepth 1 ! -name .gitignore -delete
