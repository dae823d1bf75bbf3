# SynSeg Lab. `make help` lists the targets. Every target creates .venv when it is missing.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml 2>/dev/null | cksum | cut -d' ' -f1)

MODEL ?= synseg
DATA ?= toy
SEED ?= 0
RUN ?= $(MODEL)-$(DATA)-s$(SEED)
ARGS ?=
NAME ?= default
MODELS ?=
SEEDS ?=
PLAN ?= loss
STEPS ?=
OVERWRITE ?=
RESUME ?=
REPORT_ONLY ?=
DATA_ROOT ?=
LOG_DIR ?= logs
DRY_RUN ?=
COMPARE_FLAGS = $(if $(MODELS),--models "$(MODELS)") $(if $(SEEDS),--seeds "$(SEEDS)") $(if $(STEPS),--steps $(STEPS)) $(if $(filter 1,$(OVERWRITE)),--overwrite) $(if $(filter 1,$(REPORT_ONLY)),--report-only) --data "$(DATA)" $(if $(COMPARE_DATASETS),--datasets "$(COMPARE_DATASETS)") $(if $(DATA_ROOT),--data-root "$(DATA_ROOT)") --args "$(ARGS)"
COMPARE_DATASETS = $(if $(filter command line environment,$(origin DATASETS)),$(DATASETS))
# ARGS reach Hydra as typed: no glob or brace expansion by the recipe's shell (data.shards.urls=/data/*.tar).
NOGLOB := set -f +B;
# make train: RESUME=1 continues logs/train/<RUN> from its last.ckpt; OVERWRITE=1 moves an existing one aside.
TRAIN_FLAGS = $(if $(filter 1,$(RESUME)),resume=true) $(if $(filter 1,$(OVERWRITE)),overwrite=true) $(if $(DATA_ROOT),'val.data_root=$(DATA_ROOT)')
STANDIN_CLIP := data/toyclip/toyclip-vit-p8c.pt
DENSE_DECODER := data/toyclip/synseg_head_dense.pt
MASKCLIP_REF := data/toyclip/maskclip.metrics.json

.PHONY: help venv train compare ablation eval export audit toyclip dense-decoder maskclip-ref toy-standins toy-data sample-sheet test test-slow lint format benchmark clean wandb-sync

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'
	@echo "  variables: MODEL=$(MODEL) DATA=$(DATA) SEED=$(SEED) RUN=$(RUN) ARGS='$(ARGS)'"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## Create .venv from requirements.txt plus the editable package (when missing or outdated)

train: venv ## Train: make train MODEL=synseg DATA=toy SEED=0 RUN=name [RESUME=1 | OVERWRITE=1] [DATA_ROOT=...] ARGS='trainer=gpu ...'
	@test -f configs/model/$(MODEL).yaml || { echo "MODEL=$(MODEL): unknown model; registered: $$(ls configs/model | sed 's/\.yaml//' | tr '\n' ' ')" >&2; exit 2; }
	@test -f configs/data/$(DATA).yaml || { echo "DATA=$(DATA): unknown data config; expected one of: $$(ls configs/data | sed 's/\.yaml//' | tr '\n' ' ')" >&2; exit 2; }
	@if [ "$(DATA)" = toy ] && [ "$(MODEL)" != toyclip ]; then $(MAKE) --no-print-directory toy-standins; fi
	$(NOGLOB) $(PY) -m synseg.train model=$(MODEL) data=$(DATA) seed=$(SEED) run_name=$(RUN) $(TRAIN_FLAGS) $(ARGS)

compare: venv ## Compare methods: make compare NAME=x MODELS="maskclip naclip dense_init synseg synseg_weak mixreorg" SEEDS="0 1 2" [DATA=cc12m DATASETS="voc20" DATA_ROOT=...]
	@$(NOGLOB) $(PY) -m synseg.compare --name "$(NAME)" $(COMPARE_FLAGS) --check-only
	@if [ "$(DATA)" = toy ]; then $(MAKE) --no-print-directory toy-standins; fi
	$(NOGLOB) $(PY) -m synseg.compare --name "$(NAME)" $(COMPARE_FLAGS)

# make ablation: the SynSeg studies through the same runner (run layout, report files, wandb group).
ABLATION_NAME = $(if $(filter command line environment,$(origin NAME)),$(NAME),ablation-$(PLAN))
ablation: venv ## Studies: make ablation PLAN=loss|switches|seeds|literal|budget|lr|mixing [NAME=... SEEDS=... MODELS=... OVERWRITE=1 | REPORT_ONLY=1]
	@$(NOGLOB) $(PY) -m synseg.compare --plan "$(PLAN)" --name "$(ABLATION_NAME)" $(COMPARE_FLAGS) --check-only
	@if [ "$(DATA)" = toy ]; then $(MAKE) --no-print-directory toy-standins; fi
	$(NOGLOB) $(PY) -m synseg.compare --plan "$(PLAN)" --name "$(ABLATION_NAME)" $(COMPARE_FLAGS)

toyclip: $(STANDIN_CLIP) ## Build the stand-in CLIP of the toy world into data/toyclip/ (once)
$(STANDIN_CLIP): | $(STAMP)
	$(PY) -m synseg.train experiment=toyclip overwrite=true

# The stand-in decoder and the MaskCLIP reference are rebuilt whenever the stand-in CLIP file is newer.
dense-decoder: $(DENSE_DECODER) ## Build the stand-in CLIPSeg decoder (dense BCE on the disjoint toy split)
$(DENSE_DECODER): $(STANDIN_CLIP) | $(STAMP)
	$(PY) -m synseg.train experiment=dense_decoder overwrite=true

maskclip-ref: $(MASKCLIP_REF) ## Evaluate the training-free dense CLIP on the toy test split (a reference level)
$(MASKCLIP_REF): $(STANDIN_CLIP) | $(STAMP)
	$(PY) -m synseg.train model=maskclip run_name=maskclip-toy-s0 overwrite=true
	cp logs/train/maskclip-toy-s0/metrics.json $@

# make eval: MODEL / RUN count only when given (command line or environment), not train's defaults.
CKPT ?=
DATASETS ?= toy toy_ood
DATA_ROOT ?=
SAVE_PRED ?=
EVAL_MODEL = $(if $(filter command line environment,$(origin MODEL)),$(MODEL))
EVAL_RUN = $(if $(filter command line environment,$(origin RUN)),$(RUN))
eval: venv ## Zero-shot eval: make eval CKPT=logs/train/<run>/checkpoints/last.ckpt | MODEL=maskclip|naclip [DATASETS="toy voc21" DATA_ROOT= RUN= SAVE_PRED=dir]
	@if [ -z "$(CKPT)" ] && [ -z "$(EVAL_MODEL)" ]; then echo "make eval: give CKPT=logs/train/<run>/checkpoints/last.ckpt (a trained run) or MODEL=maskclip|naclip (training-free)" >&2; exit 2; fi
	@if [ -n "$(CKPT)" ] && [ -n "$(EVAL_MODEL)" ]; then echo "make eval: give CKPT=… or MODEL=…, not both" >&2; exit 2; fi
	@if [ -n "$(EVAL_MODEL)" ] && [ ! -f configs/model/$(EVAL_MODEL).yaml ]; then echo "MODEL=$(EVAL_MODEL): unknown model; registered: $$(ls configs/model | sed 's/\.yaml//' | tr '\n' ' ')" >&2; exit 2; fi
	@if [ -n "$(CKPT)" ] && [ ! -f "$(CKPT)" ]; then echo "CKPT=$(CKPT): no such file (expected logs/train/<run>/checkpoints/last.ckpt)" >&2; exit 2; fi
	@if [ -n "$(EVAL_MODEL)" ] || echo " $(DATASETS) " | grep -q " toy "; then $(MAKE) --no-print-directory toyclip; fi
	@if [ -z "$(DATA_ROOT)" ] && echo " $(DATASETS) " | grep -q " toy "; then test -d data/toy/test || $(PY) -m synseg.data.toy write --split test --n 500 --seed 0 --out data/toy/test; fi
	@for s in dev ood; do if [ -z "$(DATA_ROOT)" ] && echo " $(DATASETS) " | grep -q " toy_$$s "; then test -d data/toy/$$s || $(PY) -m synseg.data.toy write --split $$s --n 500 --seed 0 --out data/toy/$$s; fi; done
	$(NOGLOB) $(PY) -m synseg.eval $(if $(CKPT),'ckpt=$(CKPT)') $(if $(EVAL_MODEL),method=$(EVAL_MODEL)) 'datasets="$(DATASETS)"' $(if $(DATA_ROOT),'data_root=$(DATA_ROOT)') $(if $(EVAL_RUN),'run_name=$(EVAL_RUN)') $(if $(SAVE_PRED),'save_pred=$(SAVE_PRED)') $(ARGS)

OUT ?= model.synseg
export: venv ## Export a run's model as one file: make export CKPT=logs/train/<run>/checkpoints/best.ckpt OUT=model.synseg
	@if [ -z "$(CKPT)" ]; then echo "make export: give CKPT=logs/train/<run>/checkpoints/best.ckpt (and OUT=file)" >&2; exit 2; fi
	$(PY) -m synseg.export --ckpt "$(CKPT)" --out "$(OUT)"

toy-standins: $(STANDIN_CLIP) $(DENSE_DECODER) $(MASKCLIP_REF) ## Build every cached toy stand-in that is missing

toy-data: venv ## Write the toy val/test/dev/ood folders and 8 train shards into data/
	@test -d data/toy/val || $(PY) -m synseg.data.toy write --split val --n 200 --seed 0 --out data/toy/val
	@test -d data/toy/test || $(PY) -m synseg.data.toy write --split test --n 500 --seed 0 --out data/toy/test
	@test -d data/toy/dev || $(PY) -m synseg.data.toy write --split dev --n 500 --seed 0 --out data/toy/dev
	@test -d data/toy/ood || $(PY) -m synseg.data.toy write --split ood --n 500 --seed 0 --out data/toy/ood
	@test -d data/shards || $(PY) -m synseg.data.toy write --split train --n 8000 --seed 0 --format shards --out data/shards

audit: venv ## Data audit before a DDP run: make audit DATA=shards ARGS='data.shards.urls=... world_size=4 num_workers=2 steps=50'
	$(NOGLOB) $(PY) -m synseg.data.audit data=$(DATA) $(ARGS)

sample-sheet: venv ## Render the toy-world sample sheet used in the README (docs/toyworld_sheet.png)
	$(PY) -m synseg.data.toy sheet --out docs/toyworld_sheet.png

test: venv ## Fast test suite (CPU, no network, < 10 min on 2 cores)
	$(PY) -m pytest -m "not slow" -q

test-slow: venv ## Slow tests only (stand-in CLIP quality, DDP on CPU, ...)
	$(PY) -m pytest -m slow -q

lint: venv ## ruff lint + format check
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: venv ## ruff autofix + format
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

benchmark: venv ## Data throughput benchmark (toy generator, tagging, loader/step ratio)
	$(PY) benchmarks/data_throughput.py

wandb-sync: venv ## Upload the offline wandb runs of logs/train, logs/compare and logs/eval (DRY_RUN=1: only list them)
	@runs=$$(find $(LOG_DIR)/train $(LOG_DIR)/compare $(LOG_DIR)/eval -maxdepth 6 -type d -path '*/wandb/offline-run-*' -prune 2>/dev/null | sort); \
	if [ -z "$$runs" ]; then echo "wandb-sync: no offline runs under $(LOG_DIR)/train, compare or eval"; exit 0; fi; \
	$(VENV)/bin/wandb sync --yes $(if $(filter 1,$(DRY_RUN)),--dry-run) $$runs

clean: ## Remove caches, logs and generated data (keeps .venv)
	rm -rf .pytest_cache .ruff_cache logs/train logs/eval outputs multirun
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
	@echo "generated data in data/ kept; remove it with: rm -rf data/toy data/toyclip data/cache data/shards"
