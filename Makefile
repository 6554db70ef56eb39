# cism_lib: every target depends on `setup`, so on a fresh clone each is one command.
PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
PROFILE  ?= cpu
STAMP    := $(VENV)/.cism-installed

.PHONY: setup test test-lib test-notebooks test-browser test-slow reproduce screen study lab bench bench-gpu lint mutate clean help

help:
	@echo "make setup      create $(VENV) and install cism_lib[dev] with the pinned versions (constraints.txt)"
	@echo "make test       library tests + notebooks (nbval, smoke profile)  [CI runs this]"
	@echo "make test-browser  JupyterLab in headless Chromium (needs apt-get install chromium; installs playwright)"
	@echo "make reproduce  train the profile's runs (JOBS at once), then every notebook with papermill (PROFILE=cpu|smoke|paper|isaid512), regenerating figures/ and results/; HTML report build/<profile>/index.html"
	@echo "make screen     the CISM readings on the real tiles (CISM_ISAID_ROOT; SCREEN_ARGS=\"--rows CAM CISM --seeds 0\")"
	@echo "make study      the CISM issue's convergence study on the real tiles (CISM_ISAID_ROOT; STUDY_EPOCHS=8, STUDY_ARGS=\"--threads 1\"): curves, seeds, ablation, figure"
	@echo "make lab        start JupyterLab"
	@echo "make bench      CPU benchmarks -> results/bench.json, docs/benchmarks.md"
	@echo "make lint       ruff with the project's rules (pyproject.toml; needs ruff installed)"
	@echo "make mutate     mutmut on the core modules, in a copy under build/mutate (MUTATE_ONLY=globs for a subset)"
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

# JupyterLab in headless Chromium (Debian package chromium; Playwright from PyPI, never its own
# browser download): 00_quickstart runs without an error, 11_explore redraws when a slider moves.
test-browser: setup
	@test -x "$${CISM_CHROMIUM:-/usr/bin/chromium}" || { echo "make test-browser needs Chromium: apt-get install -y chromium (or set CISM_CHROMIUM)"; exit 2; }
	@$(PY) -c "import playwright" 2>/dev/null || $(PY) -m pip install --quiet -c constraints.txt playwright
	$(PY) -m pytest -q -m browser tests/test_browser.py

test-slow: setup
	$(PY) -m pytest -q -m slow

# JOBS=1 trains the runs one after another inside the notebooks (the same numbers; default: cores ÷ the profile's threads)
reproduce: setup
	$(PY) -m cism_lib.tools.reproduce --profile $(PROFILE) $(if $(JOBS),--jobs $(JOBS))

# The CISM readings on the real tiles (CISM_ISAID_ROOT) at the screening budget (docs/results.md);
# SCREEN_ARGS="--rows CAM CISM --seeds 0" runs a part. About 8 min per row and seed on 2 cores.
screen: setup
	$(PY) -m cism_lib.cli screen $(SCREEN_ARGS)

# The CISM issue's convergence study on the real tiles (CISM_ISAID_ROOT; docs/reproduction.md,
# "The convergence study"): every run STUDY_EPOCHS long on all 2300 tiles, its CAMs scored after
# epochs 1, 2, 4, 6 and its last (results/isaid512/curve_runs.csv); CISM in the anchors' order
# (its own losses from epoch 2). First one seed of each curve, then the other seeds, then CISM
# without each component at seed 0, then the figure. Each screen resumes every run from its last
# finished epoch, so the same command continues an interrupted study.
STUDY_EPOCHS ?= 8
STUDY := $(PY) -m cism_lib.cli screen --tiles 2300 --cam-tiles 300 --epochs $(STUDY_EPOCHS) $(STUDY_ARGS)
ANCHORS := --train.aux_from_epoch 2
CURVE := --train.curve_epochs 1,2,4,6
study: setup
	$(STUDY) $(CURVE) --rows CAM CIAN --seeds 0
	$(STUDY) $(CURVE) --rows CISM --seeds 0 $(ANCHORS)
	$(STUDY) $(CURVE) --rows CAM --seeds 1 2
	$(STUDY) $(CURVE) --rows CIAN --seeds 1
	$(STUDY) $(CURVE) --rows CISM --seeds 1 2 $(ANCHORS)
	$(STUDY) --rows "CISM, no PV" "CISM, no PIE" "CISM, no SLSC" "CISM, no L_csm" "CISM, no L_nsc" "CISM + MCSG" --seeds 0 $(ANCHORS)
	$(PY) -m cism_lib.cli curve --csv results/isaid512/curve_runs.csv --figure isaid512_curves --profile isaid512
	$(PY) -m cism_lib.cli screen --summary

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

# Sized for a 2-core CPU (about 10 min); `python -m cism_lib.tools.bench --help` for the full-size defaults.
BENCH_ARGS ?= --size 256 --batch 4 --steps 3 --warmup 1 --cam-images 4 --seg-batch 4 --crf-images 64 --pie-batch 2 --threads 2 --compile
bench: setup
	$(PY) -m cism_lib.tools.bench --device cpu $(BENCH_ARGS)

bench-gpu: setup
	$(PY) -m cism_lib.tools.bench --device cuda

# The notebooks share one setup cell (`from cism_lib import experiments, pipeline, viz`, then `PROFILE`),
# which some extend: its unused imports, later imports and mid-cell `PROFILE` are not lint errors there.
lint:
	@$(PY) -m ruff --version >/dev/null 2>&1 || { echo "make lint needs ruff: $(PY) -m pip install ruff"; exit 2; }
	$(PY) -m ruff check cism_lib tests docs/scripts
	$(PY) -m ruff check --extend-ignore F401,E402,B018 notebooks/*.ipynb

# Mutation testing (docs/testing.md) in a copy, so the working tree is never mutated. One process,
# one thread: a full run is long on a small machine; MUTATE_ONLY="cism_lib/models/slsc.py" runs a subset.
MUTATE_ONLY  ?= cism_lib/models/* cism_lib/losses.py cism_lib/metrics.py cism_lib/cam.py cism_lib/data/pairs.py cism_lib/data/mcsg.py cism_lib/crf.py
MUTATE_TESTS ?= tests/test_reference_math.py tests/test_cism_forward.py tests/test_gradients.py tests/test_threshold_protocol.py tests/test_models.py tests/test_losses.py tests/test_cam_metrics.py tests/test_crf.py tests/test_pairs_mcsg.py tests/test_backbones.py tests/test_cam_pipeline.py tests/test_metrics_sweep.py tests/test_crf_pipeline.py tests/test_mcsg_geometry.py tests/test_pairs_sampling.py tests/test_inside.py tests/test_cism_heads.py tests/test_backbone_weights.py

mutate: setup
	@$(PY) -c "import mutmut" 2>/dev/null || $(PY) -m pip install --quiet "mutmut==3.8.1"  # not in [dev]: only this target needs it
	rm -rf build/mutate && mkdir -p build/mutate
	cp -r cism_lib tests pyproject.toml build/mutate/
	{ echo "[mutmut]"; echo "source_paths = cism_lib"; echo "mutate_only_covered_lines = true"; \
	  echo "only_mutate ="; for g in $(MUTATE_ONLY); do echo "    $$g"; done; \
	  echo "pytest_add_cli_args_test_selection ="; for t in $(MUTATE_TESTS); do echo "    $$t"; done; \
	} > build/mutate/setup.cfg
	cd build/mutate && OMP_NUM_THREADS=1 $(abspath $(PY)) -m mutmut run --max-children 1; \
		OMP_NUM_THREADS=1 $(abspath $(PY)) -m mutmut results --all true > results.txt; \
		echo "killed: $$(grep -c ': killed' results.txt), survived: $$(grep -c ': survived' results.txt), all: $$(grep -c ': ' results.txt) (build/mutate/results.txt)"

clean:
	rm -rf build/ .pytest_cache/ **/__pycache__
