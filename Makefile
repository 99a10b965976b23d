# Set-up and entry points. `make repro` and `make test` do everything on a fresh machine.
VENV ?= .venv
PYTHON ?= python3.11
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1

.PHONY: setup repro test lint format bench

# torch is installed first and pinned: on a CPU machine this takes the 2.13.0 CPU build instead of a
# multi-GB CUDA build. GPU users: see README "GPU install".
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

## Main job: the whole DVC pipeline on the embedded synthetic dataset.
repro: setup
	dvc repro

## Tests: lint + format check + the test suite.
test: setup lint
	pytest -q

lint: setup
	ruff format --check .
	ruff check .

format: setup
	ruff format .
	ruff check --fix .

bench: setup
	python benchmarks/preprocess_bench.py
	python benchmarks/eval_bench.py
	python benchmarks/train_bench.py
