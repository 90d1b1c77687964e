# unet-lessons: `make lab` opens the lessons, `make test` runs the whole suite (unit tests,
# the notebooks under nbval, then the lessons live in JupyterLab in headless Chromium).
# Both create .venv and install the pinned set (requirements.lock) on first use, and
# reinstall nothing afterwards unless requirements.lock or pyproject.toml changed.

PYTHON ?= python3
VENV ?= .venv
PORT ?= 8888
# CPU=1 installs PyTorch's CPU-only build from PyTorch's own wheel index: laptops
# without an NVIDIA GPU skip the multi-GB CUDA download that PyPI's Linux torch brings.
CPU ?= 0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
# Where datasets are found or downloaded to (.ci/run points it at ../shared/data).
UNET_LESSONS_DATA ?= $(CURDIR)/data
export UNET_LESSONS_DATA

BIN := $(VENV)/bin
# JupyterLab refuses to run as root unless told; containers and CI often are root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
STAMP := $(VENV)/.installed
TORCH_PIN := $(shell grep -E '^torch==' requirements.lock)

# The notebook tests compare printed numbers exactly, so they run on the CPU with a
# fixed thread count, offline, whatever the machine has.
TEST_ENV := UNET_LESSONS_NUM_THREADS=2 UNET_LESSONS_DEVICE=cpu UNET_LESSONS_OFFLINE=1 \
	CUDA_VISIBLE_DEVICES= PYTHONHASHSEED=0 MPLBACKEND=Agg PYDEVD_DISABLE_FILE_VALIDATION=1 \
	JUPYTER_PLATFORM_DIRS=1

# The browser tests (tests/browser): Debian's Chromium, driven by Playwright's Python package
# (pinned in requirements.lock; it brings its own driver and never downloads a browser).
CHROMIUM ?= /usr/bin/chromium
BROWSER_PACKAGES := chromium fonts-dejavu-core

NBVAL_FLAGS := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
	--nbval-cell-timeout=600 -p no:cacheprovider

.PHONY: colab site measure setup data lab test test-unit test-floor test-notebooks browser-setup test-browser bench claims execute clean
# In order, also under make -j: the browser tests read what the notebook tests store.
.NOTPARALLEL:

setup: $(STAMP)

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "The pinned set (requirements.lock) needs Python 3.11 or later; set PYTHON=python3.11 or newer."; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.lock pyproject.toml | $(BIN)/python
ifeq ($(CPU),1)
	$(BIN)/python -m pip install --index-url $(TORCH_CPU_INDEX) "$(TORCH_PIN)"
endif
	$(BIN)/python -m pip install -r requirements.lock
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .
	# Build matplotlib's font cache now, so its one-time notice never lands in a notebook's output.
	$(BIN)/python -c "import matplotlib.font_manager"
	touch $@

lab: setup
	@echo "Opening JupyterLab on http://localhost:$(PORT)/lab (set PORT=... to change it)"
	$(BIN)/jupyter lab --notebook-dir=notebooks --port=$(PORT) --ServerApp.port_retries=0 $(ROOT_FLAG)

test: test-unit test-floor test-notebooks test-browser

test-unit: setup
	$(TEST_ENV) $(BIN)/python -m pytest tests --ignore=tests/browser -p no:cacheprovider

# The widget tests on the lowest ipywidgets that pyproject.toml allows (Google Colab ships 7.7.1 and must
# restart to upgrade). Lower cannot be the floor: before 7.5 ipywidgets fails to import on Python 3.10+
# (collections.Mapping), and before 7.6.4 its metadata leaves out ipython_genutils, which it imports and
# nothing in the pinned set brings. Exact pins, installed without dependencies: ipywidgets, the
# widgetsnbextension and jupyterlab_widgets of its own line, and ipython_genutils.
FLOOR_PINS := ipywidgets==7.6.4 widgetsnbextension==3.5.2 jupyterlab_widgets==1.0.2 ipython_genutils==0.2.0
FLOOR_VENV := .venv-floor
FLOOR_STAMP := $(FLOOR_VENV)/.installed
FLOOR_IPYWIDGETS := $(patsubst ipywidgets==%,%,$(filter ipywidgets==%,$(FLOOR_PINS)))
FLOOR_TESTS := tests/test_slice_viewer.py
# The floor venv holds only FLOOR_PINS; a .pth file appends $(VENV)'s site-packages after its own, so torch
# and the rest come from there, and a link gives nbconvert its templates. Rebuilt when FLOOR_PINS differ
# from what the stamp records, or when $(VENV) was reinstalled.
ifneq ($(shell cat $(FLOOR_STAMP) 2>/dev/null),$(FLOOR_PINS))
.PHONY: $(FLOOR_STAMP)
endif

$(FLOOR_STAMP): $(STAMP)
	rm -rf $(FLOOR_VENV)
	$(BIN)/python -m venv --without-pip $(FLOOR_VENV)
	$(BIN)/python -m pip --python $(FLOOR_VENV)/bin/python install --no-deps $(FLOOR_PINS)
	$(FLOOR_VENV)/bin/python -c "import sys, sysconfig; open(sysconfig.get_path('purelib') + '/zz_main_venv.pth', 'w')\
		.write(f'import site; site.addsitedir({sys.argv[1]!r})\n')" \
		"$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
	mkdir -p $(FLOOR_VENV)/share/jupyter
	ln -s $(abspath $(VENV))/share/jupyter/nbconvert $(FLOOR_VENV)/share/jupyter/nbconvert
	echo '$(FLOOR_PINS)' > $@

# Fails unless the floor venv imports ipywidgets $(FLOOR_IPYWIDGETS) from itself. An argument that 7 lacks
# (an 8-only option) is dropped there with a mere warning, so that warning fails the run; 7 on ipykernel 7
# warns at every widget that ipykernel.comm.Comm is deprecated: not ours to fix, and hidden.
test-floor: $(FLOOR_STAMP)
	$(FLOOR_VENV)/bin/python -c "import sys, ipywidgets as w; print('test-floor: ipywidgets', w.__version__, 'from', w.__file__);\
		ok = w.__version__ == '$(FLOOR_IPYWIDGETS)' and w.__file__.startswith(sys.prefix + '/');\
		sys.exit(None if ok else 'test-floor: expected ipywidgets $(FLOOR_IPYWIDGETS) from ' + sys.prefix)"
	$(TEST_ENV) $(FLOOR_VENV)/bin/python -m pytest $(FLOOR_TESTS) -p no:cacheprovider \
		-W 'ignore:The `ipykernel.comm.Comm` class has been deprecated:DeprecationWarning' \
		-W 'error:Passing unrecognized arguments:DeprecationWarning'

# Verify the ISBI data set (and download what is missing, when online); the notebook
# tests themselves then run offline.
data: setup
	$(BIN)/python -m unet_lessons.data.isbi

# Saved training runs (unet_lessons/runs.py): the notebook tests train every run and save it
# (refresh), and the browser tests load them (reuse) instead of training again: numbers are
# nbval's job, so the browser run only has to show the lessons live, within make test's budget.
# The test runs live in their own folder, apart from a lecturer's own saved runs.
TEST_RUNS := $(abspath $(VENV))/test-runs

test-notebooks: data
	rm -rf $(TEST_RUNS)
	$(TEST_ENV) UNET_LESSONS_RUNS=refresh UNET_LESSONS_RUN_DIR=$(TEST_RUNS) \
		$(BIN)/python -m pytest $(NBVAL_FLAGS) notebooks

# Chromium from Debian (as root, through apt-get; skipped when it is already there) and the
# pinned Playwright. Where neither can be installed, the browser tests are skipped and say
# why; on CI (CI=true) a failed install fails, so that CI always runs them.
browser-setup: setup
	@if [ -x "$(CHROMIUM)" ]; then \
		echo "browser-setup: $(CHROMIUM) is installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y --no-install-recommends $(BROWSER_PACKAGES) || \
		{ apt-get update && apt-get install -y --no-install-recommends $(BROWSER_PACKAGES); } || \
		{ echo "browser-setup: apt-get could not install $(BROWSER_PACKAGES)"; [ "$$CI" != true ]; }; \
	else \
		echo "browser-setup: Chromium is missing; install it as root: apt-get install $(BROWSER_PACKAGES)"; \
		[ "$$CI" != true ]; \
	fi
	@$(BIN)/python -c "import playwright" 2>/dev/null || \
		$(BIN)/python -m pip install $$(grep -E '^(playwright|greenlet)==' requirements.lock) || \
		{ echo "browser-setup: pip could not install playwright"; [ "$$CI" != true ]; }

# Every lesson run live in JupyterLab in headless Chromium, and lesson 03's viewer driven by
# keyboard and mouse. Training runs are loaded from those the notebook tests saved; within
# make test every one must be (UNET_LESSONS_EXPECT_SAVED_RUNS), or the suite would silently slow.
# Screenshots: tests/browser/artifacts/.
test-browser: browser-setup data
	$(TEST_ENV) UNET_LESSONS_RUNS=reuse UNET_LESSONS_RUN_DIR=$(TEST_RUNS) UNET_LESSONS_BROWSER_TESTS=1 \
		UNET_LESSONS_EXPECT_SAVED_RUNS=$(if $(filter test,$(MAKECMDGOALS)),1,0) \
		$(BIN)/python -m pytest tests/browser -p no:cacheprovider -v --durations=0

# Speed figures that do not belong in timed tests, and the stored benchmark tables of the
# lessons (notebooks/results/): every arm and seed a lesson cannot train live. Same CPU
# settings as the notebook tests. One lesson: make bench LESSONS=06. An interrupted run
# resumes where it stopped (notebooks/results/*.partial); trained runs are kept outside the
# repository (the saved-runs folder's benchmark/), so a changed score re-scores without training.
LESSONS ?= 04 06 07
bench: setup
	$(TEST_ENV) $(BIN)/python tests/benchmarks/bench_volumes.py
	for lesson in $(LESSONS); do $(TEST_ENV) $(BIN)/python -m unet_lessons.benchmark $$lesson || exit 1; done

# Re-run one stored lesson in place with the test settings (NB=notebooks/06_no_new_net.ipynb), storing
# no widget state and no timestamps, then check it as make test will (tests/notebook_hygiene.py).
NB ?=
execute: setup data
	@test -n "$(NB)" || { echo "name the lesson: make execute NB=notebooks/04_vnet.ipynb"; exit 1; }
	cd $(dir $(NB)) && $(TEST_ENV) $(CURDIR)/$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=900 --ExecutePreprocessor.record_timing=False \
		--ExecutePreprocessor.store_widget_state=False $(notdir $(NB))
	$(BIN)/python tests/notebook_hygiene.py $(NB)

# The lessons' claim ledgers, read from the stored notebooks (nothing runs), into the README.
claims: setup
	$(BIN)/python -m unet_lessons.claims notebooks --readme README.md

# The lessons' website from their stored outputs (docs/build_site.py): nothing runs, nothing is
# fetched; docs/_build/html/index.html. tests/browser/test_site.py builds and reads it in Chromium.
site: setup
	$(BIN)/python docs/build_site.py

# Each lesson's run time and peak memory (the kernel's peak resident memory), top to bottom with the
# test settings, into notebooks/results/lesson_runs.csv, which the site shows. All lessons take about
# 25 minutes; one: make measure NB=notebooks/04_vnet.ipynb. Run it on an idle machine.
measure: setup data
	$(TEST_ENV) $(BIN)/python tests/benchmarks/lesson_runs.py $(NB)

# Each lesson's "Open in Colab" badge and first cell, from [tool.unet-lessons.published] in pyproject.toml
# (unet_lessons/publish.py). tests/test_publish.py fails when the stored cells and the setting differ.
colab: setup
	$(BIN)/python -m unet_lessons.publish

clean:
	rm -rf $(VENV) $(FLOOR_VENV) .pytest_cache

# Lecture slides of every lesson (docs/slides.py): reveal.js decks and PDF handouts printed by
# Chromium, with reveal.js, MathJax, require.js and jQuery copied from docs/vendor/, so that the
# folder works offline. Open docs/_build/slides/index.html. Other notebooks, or no handouts:
# .venv/bin/python docs/slides.py FOLDER --no-pdf
.PHONY: slides
slides: setup
	$(BIN)/python docs/slides.py
