# vjfer — set-up, tests, the embedded demo and the paper's full reproduction.
#
#   make demo        generated mini dataset + tiny encoder, end to end (CPU, ~2 minutes)
#   make test        the test suite
#   make reproduce   RAVDESS=... CREMA_D=... CHECKPOINT=.../vith16-384.pth.tar   (GPU; see README)
#
# torch is chosen deliberately: TORCH (default torch==2.13.0, a CPU build that is small and quick to
# install) goes into the virtual environment before vjfer. With a GPU, pick your CUDA build, e.g.
#   make test TORCH="torch --index-url https://download.pytorch.org/whl/cu126"
# or keep a torch you already have:  make test TORCH=   (the venv then sees the system site-packages).

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
EXTRAS ?= dev,hf

BIN := $(VENV)/bin
VJFER := $(BIN)/vjfer

.PHONY: install test lint demo reproduce clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(if $(strip $(TORCH)),,--system-site-packages) $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(if $(strip $(TORCH)),$(BIN)/python -m pip install --quiet $(TORCH))
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check vjfer tests benchmarks
	$(BIN)/ruff format --check vjfer tests benchmarks

demo: install
	$(VJFER) demo --out demo

clean-venv:
	rm -rf $(VENV)
