# vjfer — set-up, tests, the embedded demo and the paper's full reproduction.
#
#   make demo        generated mini dataset + tiny encoder, end to end (CPU, ~2 minutes)
#   make bench       the leaderboard (bench/) of every cache under cache/ (docs/bench.md)
#   make test        the test suite
#   make reproduce   RAVDESS=... CREMA_D=... CHECKPOINT=.../vith16-384.pth.tar   (GPU; see README)
#                    [DFEW=... FERV39K=... MAFW=...]   (optional: the field's frame-folder datasets)
#
# torch is chosen deliberately: TORCH (default torch==2.13.0, a CPU build that is small and quick to
# install) goes into the virtual environment before vjfer. With a GPU, pick your CUDA build, e.g.
#   make test TORCH="torch --index-url https://download.pytorch.org/whl/cu126"
# or keep a torch you already have:  make test TORCH=   (the venv then sees the system site-packages).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
EXTRAS ?= dev,hf,face,cluster

BIN := $(VENV)/bin
VJFER := $(BIN)/vjfer

.PHONY: install install-dev test test-fast lint demo bench reproduce clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(if $(strip $(TORCH)),,--system-site-packages) $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Two stamps: the demo needs only the package (.core); the tests also need pytest, ruff,
# transformers, OpenCV and scikit-image (.dev). Each is redone when pyproject.toml changes.
$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(if $(strip $(TORCH)),$(BIN)/python -m pip install --quiet $(TORCH))
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.core

install-dev: $(VENV)/.dev

# Tests run in TEST_WORKERS processes (pytest-xdist), one test file per process at a time, so a
# module's fixtures are built once; the suite is CPU-bound on one core per process (torch on one
# thread: OMP_NUM_THREADS=1 also reaches the CLI processes tests start), so 2 workers use a
# 2-core machine fully. TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile)

test: install-dev
	$(PYTEST)

# Everything but the end-to-end runs marked `slow` (make reproduce, the demo, two ranks, ...).
test-fast: install-dev
	$(PYTEST) -m "not slow"

lint: install-dev
	$(BIN)/ruff check vjfer tests benchmarks
	$(BIN)/ruff format --check vjfer tests benchmarks
	$(BIN)/mypy

demo: install
	$(VJFER) demo --out demo

# Every complete cache under CACHE: probed where no run covers it (attentive, linear and k-NN in one
# pass), then leaderboard.csv, leaderboard.html and predictions.parquet in BENCH.
CACHE ?= cache
BENCH ?= bench
bench: install
	@if [ -n "$$(find $(CACHE) -name manifest.json 2>/dev/null | head -1)" ]; then \
		$(VJFER) bench $(CACHE) --out $(BENCH); \
	else echo "make bench: no cache under $(CACHE)/ (make one with vjfer extract, or set CACHE=DIR)"; fi

clean-venv:
	rm -rf $(VENV)

# ---------------------------------------------------------------------------------------------
# The paper's full pipeline on real data (GPU). Each step leaves a file that the next depends on,
# so an interrupted `make reproduce` resumes where it stopped (extraction also resumes by shard).
#   make reproduce RAVDESS=/data/RAVDESS CREMA_D=/data/CREMA-D CHECKPOINT=/models/vith16-384.pth.tar

RAVDESS ?= $(VJFER_RAVDESS)
CREMA_D ?= $(VJFER_CREMA_D)
CHECKPOINT ?= $(VJFER_CHECKPOINT)
ENCODER ?= vjepa-h16-384
OUT ?= reproduce
EXTRACT_FLAGS ?=
PROBE_FLAGS ?=

R := $(OUT)
DATASET_ROOT_ravdess = $(RAVDESS)
DATASET_ROOT_crema-d = $(CREMA_D)
# Optional: the field's frame-folder datasets (README, "More datasets"); each given root adds its
# extract and probe steps, and its runs enter the report.
DFEW ?= $(VJFER_DFEW)
FERV39K ?= $(VJFER_FERV39K)
MAFW ?= $(VJFER_MAFW)
DATASET_ROOT_dfew = $(DFEW)
DATASET_ROOT_ferv39k = $(FERV39K)
DATASET_ROOT_mafw = $(MAFW)
EXTRA_DATASETS := $(if $(DFEW),dfew) $(if $(FERV39K),ferv39k) $(if $(MAFW),mafw)

.SECONDARY:  # keep every step's .done file: they are how a rerun knows where it stopped

$(BIN)/vjfer: $(VENV)/.core ;

reproduce: $(R)/report/report.md
	@echo "tables and figures: $(R)/report/"

$(R)/.check:
	@test -n "$(RAVDESS)" -a -d "$(RAVDESS)" || { echo "set RAVDESS=DIR (or VJFER_RAVDESS): the folder holding Actor_01 .. Actor_24" >&2; exit 2; }
	@test -n "$(CREMA_D)" -a -d "$(CREMA_D)" || { echo "set CREMA_D=DIR (or VJFER_CREMA_D): the folder holding VideoFlash/" >&2; exit 2; }
	@test "$(ENCODER)" = tiny || test -n "$(CHECKPOINT)" -a -e "$(CHECKPOINT)" || { echo "set CHECKPOINT=FILE (or VJFER_CHECKPOINT): vith16-384.pth.tar from facebookresearch/jepa" >&2; exit 2; }
	mkdir -p $(R) && touch $@

# Exit status 2 = some videos could not be decoded: they are listed in the cache's failures.jsonl
# and the reproduction goes on without them (nothing is substituted).
$(R)/extract-%.done: $(R)/.check | $(VJFER)
	$(VJFER) extract --dataset $* --root "$(DATASET_ROOT_$*)" --encoder $(ENCODER) \
		$(if $(CHECKPOINT),--checkpoint "$(CHECKPOINT)") --cache $(R)/cache --no-progress \
		$(EXTRACT_FLAGS) || test $$? -eq 2
	touch $@

# --resume: an interrupted probe continues from its last epoch checkpoint (or starts, if none)
$(R)/probe-%.done: $(R)/extract-%.done
	$(VJFER) probe --dataset $* --fold all --cache $(R)/cache --out $(R)/runs --no-progress --resume $(PROBE_FLAGS)
	touch $@

$(R)/cross-%.done: $(R)/probe-ravdess.done $(R)/probe-crema-d.done
	$(VJFER) cross --train $(firstword $(subst -to-, ,$*)) --test $(lastword $(subst -to-, ,$*)) \
		--calm both --runs $(R)/runs --cache $(R)/cache
	touch $@

$(R)/report/report.md: $(R)/cross-ravdess-to-crema-d.done $(R)/cross-crema-d-to-ravdess.done \
		$(foreach d,$(EXTRA_DATASETS),$(R)/probe-$(d).done)
	$(VJFER) report $(R)/runs --out $(R)/report --cache $(R)/cache
