# Set-up, demo and tests. Everything goes into .venv; torch is pinned first so that the CPU
# wheel is used (any other spec would pull the CUDA build).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo demo-recon pretrained test lint clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mist demo --out demo

# The auto-encoder demo: the same scenes found from the pixels alone, no labels.
demo-recon: $(STAMP)
	$(BIN)/mist demo --task reconstruct --out demo-recon

# Trains, evaluates and packages the shipped models into src/mistnet/weights (full MNIST must be
# in the data cache: mist data download mnist); see benchmarks/train_pretrained.sh.
pretrained: $(STAMP)
	MIST=$(BIN)/mist benchmarks/train_pretrained.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) demo demo-recon build *.egg-info src/*.egg-info
