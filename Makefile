# cism_lib: every target depends on `setup`, so on a fresh clone each is one command.
PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
PROFILE  ?= cpu
STAMP    := $(VENV)/.cism-installed

.PHONY: setup test test-lib test-notebooks test-slow reproduce lab bench bench-gpu lint clean help

help:
	@echo "make setup      create $(VENV) and install cism_lib[dev] with the pinned versions (constraints.txt)"
	@echo "make test       library tests + notebooks (nbval, smoke profile)  [CI runs this]"
	@echo "make reproduce  run every notebook with papermill (PROFILE=cpu|smoke|paper), regenerating figures/ and results/"
	@echo "make lab        start JupyterLab"
	@echo "make bench      CPU benchmarks -> results/bench.json, docs/benchmarks.md"
	@echo "make lint       ruff with the project's rules (pyproject.toml; needs ruff installed)"
	@echo "make clean      remove build outputs (keeps $(VENV), data/ and runs/)"

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

test: test-lib test-notebooks

test-lib: setup
	$(PY) -m pytest -q

test-notebooks: setup
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
		CISM_PROFILE=smoke CISM_HEADLESS=1 $(PY) -m pytest -q -p no:cacheprovider --nbval-lax notebooks/ -o addopts="" ; \
	else echo "no notebooks yet"; fi

test-slow: setup
	$(PY) -m pytest -q -m slow

reproduce: setup
	$(PY) -m cism_lib.reproduce --profile $(PROFILE)

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

bench: setup
	$(PY) -m cism_lib.bench --device cpu --compile

bench-gpu: setup
	$(PY) -m cism_lib.bench --device cuda

lint:
	@$(PY) -m ruff --version >/dev/null 2>&1 || { echo "make lint needs ruff: $(PY) -m pip install ruff"; exit 2; }
	$(PY) -m ruff check cism_lib tests docs/scripts notebooks/make_notebooks.py

clean:
	rm -rf build/ .pytest_cache/ **/__pycache__
