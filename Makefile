# gapray: `make demo` runs the main job locally, `make test` runs the whole test suite.
# Both create a virtual environment and install everything from scratch on a fresh clone.
VENV ?= .venv
PY := $(VENV)/bin/python
# No CUDA on this machine: the CPU wheel of torch 2.13.0 (on disk here); with CUDA: the normal wheel.
TORCH_SPEC := $(shell if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo 'torch>=2.4'; else echo 'torch==2.13.0'; fi)
# The data root: $GAPRAY_DATA_DIR, else ../shared/data when it exists, else none (the demo downloads into the cache).
DATA_DIR ?= $(if $(GAPRAY_DATA_DIR),$(GAPRAY_DATA_DIR),$(wildcard ../shared/data))
PYTEST_ARGS ?=

.PHONY: demo test lint mutate install clean

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $@

install: $(VENV)/.installed

# The main job: the demo DEARI sweep (Beijing air; best trial vs LOCF and mean) on an embedded local Ray,
# tracked in ./mlflow.db. The data are downloaded first when not on disk.
demo: $(VENV)/.installed
	$(PY) tuning/deari_sweep.py --demo $(if $(DATA_DIR),--data-dir $(DATA_DIR),) \
		--tracking-uri sqlite:///mlflow.db --storage-path $(CURDIR)/ray_results

test: $(VENV)/.installed
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

lint: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[dev]"
	$(VENV)/bin/ruff check platform envs tests tuning benchmarks

# Mutation testing (mutmut 3) of the equation and wiring modules against their fast tests; writes
# benchmarks/results/mutation.md. Hours on 2 shared cores (resumes from build/mutation): not part of
# `make test`. MUTATE_ARGS="--modules baselines dml" picks modules, "--retest-survivors" reruns survivors.
mutate: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[dev]"
	OMP_NUM_THREADS=1 nice -n 15 $(PY) benchmarks/mutation.py $(MUTATE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
