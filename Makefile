# Set-up and entry points. `make repro` and `make test` do everything on a fresh machine.
VENV ?= .venv
PYTHON ?= python3.11
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1

.PHONY: setup repro test lint format bench ci-pipeline ci-baseline ablations ablation-commands audit label-audit seeds compare
comma := ,

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

## The ablation grid as queued DVC experiments: each BEEP3D part off in turn, the box-query loss
## included (the teacher's pseudo-masks, off by default, on; the teacher on every third step with
## the consistency weights tripled), and box_heuristic, for every seed of ABLATION_SEEDS, with
## ABLATION_SET applied to all of them before each entry's own switches, so that an entry's switch
## wins (a shorter budget; the superpoint audit's grid: ABLATION_SET="data_loader.superpoints=computed
## train.beep3d.prior_containment=0.8" keeps no-box-prior's containment 0); `dvc queue start` runs
## them, and the report groups whatever has finished over seeds (README "Reports, ablations,
## seeds"). `make ablation-commands` prints the `dvc exp run --queue` lines without queueing.
ABLATION_SEEDS ?= 0,1
ABLATION_SET ?=
ABLATIONS := \
	default: \
	pseudo-masks:train.beep3d.pseudo_masks=true \
	no-center-queries:train.beep3d.center_queries=false \
	no-query-consistency:train.beep3d.query_consistency=false \
	no-feature-consistency:train.beep3d.feature_consistency=false \
	no-consistency:train.beep3d.query_consistency=false,train.beep3d.feature_consistency=false \
	no-box-prior:train.beep3d.prior_containment=0.0,train.beep3d.prior_objects_first=false \
	no-box-query-loss:train.box_query_weight=0.0 \
	teacher-every-3:train.beep3d.teacher_every=3,train.beep3d.query_consistency_weight=1.5,train.beep3d.feature_consistency_weight=1.5 \
	box-heuristic:train.mode=box_heuristic
ablation-commands:
	@for seed in $(subst $(comma), ,$(ABLATION_SEEDS)); do \
	  for entry in $(ABLATIONS); do \
	    name=$${entry%%:*}; sets=$${entry#*:}; \
	    echo "dvc exp run --queue -n abl-$$name-s$$seed -S train.seed=$$seed" \
	      $$(for kv in $(ABLATION_SET) $$(echo $$sets | tr , ' '); do printf -- '-S %s ' $$kv; done); \
	  done; \
	done

ablations: setup
	commands=$$($(MAKE) -s --no-print-directory ablation-commands) || exit 1; \
	echo "$$commands" | while read -r command; do $$command || exit 1; done
	dvc queue start

## The superpoint audit: beep3d, box_heuristic and two_stage on our computed over-segmentation
## instead of the dataset's superpoints (containment 0.8: computed superpoints straddle more boxes).
audit: setup
	dvc exp run --queue -n audit-beep3d-computed -S data_loader.superpoints=computed -S train.beep3d.prior_containment=0.8
	dvc exp run --queue -n audit-box-heuristic-computed -S data_loader.superpoints=computed -S train.mode=box_heuristic
	dvc exp run --queue -n audit-two-stage-computed -S data_loader.superpoints=computed -S train.beep3d.prior_containment=0.8 -S train.mode=two_stage
	dvc queue start

## What the box labels get right and wrong on every training scene of data/processed, per class
## (README "What box labels cannot fix"); LABEL_AUDIT_OUT names the markdown table.
LABEL_AUDIT_OUT ?= reports/benchmarks/label_errors_by_class.md
label-audit: setup
	python benchmarks/pseudo_label_audit.py --data data/processed --scenes 0 --markdown $(LABEL_AUDIT_OUT)

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
