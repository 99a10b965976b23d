# Set-up and entry points. `make repro` and `make test` do everything on a fresh machine.
VENV ?= .venv
PYTHON ?= python3.11
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1

.PHONY: setup repro test lint format bench ci-pipeline ci-baseline ablations seeds compare

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
	python benchmarks/beep3d_step_bench.py
	python benchmarks/memory_bench.py
	python benchmarks/ddp_bench.py

## CI-size pipeline in a temporary copy + benchmark regression check against .ci/baseline.json.
ci-pipeline: setup
	.ci/pipeline.sh

## Deliberately accept the CI-size figures of this code as the new baseline (commit it, say why).
ci-baseline: setup
	.ci/pipeline.sh --write-baseline

## The ablation grid as queued DVC experiments (each BEEP3D part off in turn, EMA rates, the
## other modes); `dvc queue start` runs them, the report tabulates whatever has finished.
ablations: setup
	dvc exp run --queue -n abl-no-pseudo-masks -S train.beep3d.pseudo_masks=false
	dvc exp run --queue -n abl-no-center-queries -S train.beep3d.center_queries=false
	dvc exp run --queue -n abl-no-vote -S train.beep3d.superpoint_vote=false
	dvc exp run --queue -n abl-no-query-consistency -S train.beep3d.query_consistency=false
	dvc exp run --queue -n abl-no-feature-consistency -S train.beep3d.feature_consistency=false
	dvc exp run --queue -n abl-no-box-queries -S train.box_query_weight=0.0
	dvc exp run --queue -n abl-no-prior-containment -S train.beep3d.prior_containment=0.0
	dvc exp run --queue -n abl-no-prior-objects-first -S train.beep3d.prior_objects_first=false
	dvc exp run --queue -n abl-no-box-prior -S train.beep3d.prior_containment=0.0 -S train.beep3d.prior_objects_first=false
	dvc exp run --queue -n abl-box-query-inside -S model.box_query_inside=true
	dvc exp run --queue -n abl-ema-0.99 -S train.ema=0.99
	dvc exp run --queue -n abl-ema-0.9999 -S train.ema=0.9999
	dvc exp run --queue -n abl-box-heuristic -S train.mode=box_heuristic
	dvc exp run --queue -n abl-full -S train.mode=full
	dvc exp run --queue -n abl-two-stage -S train.mode=two_stage
	dvc exp run --queue -n abl-computed-superpoints -S data_loader.superpoints=computed -S train.beep3d.prior_containment=0.8
	dvc exp run --queue -n abl-box-heuristic-computed -S train.mode=box_heuristic -S data_loader.superpoints=computed
	dvc queue start

## Seeds for mean +- std (the report groups runs that differ only in train.seed).
seeds: setup
	dvc exp run --queue -S train.seed=0,1,2
	dvc queue start

## The three training modes paired on seed: queues each mode x seed that has no evaluated run in
## the store yet, runs them one at a time, then prints the comparison (README "Reports, ablations,
## seeds"). E.g. `make compare SEEDS=0,1,2 SET="train.epochs=40" OUT=comparison.md`.
SEEDS ?= 0,1,2
MODES ?= beep3d,box_heuristic,full
compare: setup
	python -m pipeline.compare --run --modes $(MODES) --seeds $(SEEDS) $(foreach s,$(SET),--set $(s)) $(if $(OUT),--out $(OUT))
