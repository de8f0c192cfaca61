# The two commands of the README. Each sets up a fresh machine by itself.
# PYTHON and VENV choose the environment: `make test PYTHON=python3.13 VENV=.venv-newest` runs
# the suite on another Python, in its own venv (.ci/run does both).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKDIR ?= runs/demo
# Test processes (pytest-xdist): XLA compiles on one thread, so two processes keep both cores
# busy; docs/performance.md has the suite's times.
TEST_WORKERS ?= 2

.PHONY: setup demo test clean

$(STAMP): setup.cfg setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python experiments/main.py --config experiments/configs/vae_digits.py --workdir $(WORKDIR)

test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 tests

clean:
	rm -rf $(VENV) *.egg-info
