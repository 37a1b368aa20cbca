# The commands the README names. Each one sets up .venv first when it is missing or stale.
#   make lab        set up what a learner needs (JupyterLab, widgets, the package), copy the student
#                   notebooks into my-work/ (never overwriting a copy; git ignores the folder), then open
#                   JupyterLab at the course root on my-work/00_welcome.ipynb
#   make test       set up, then run the unit tests and every notebook (.ci/run calls this first)
#   make notebooks  rebuild solutions/*.ipynb and notebooks/*.ipynb from solutions/*.py
#   make site       build the course website into _site/ (mkdocs.yml; no network needed)
#   make test-browser  JupyterLab and the site in headless Chromium (browser_tests/; .ci/run runs it
#                   after make test; installs Debian's chromium when it is missing and make runs as root)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAB_STAMP := $(VENV)/.installed-lab
WORK ?= my-work
# Linux x86-64 gets these exact builds first (and only when torch is missing); elsewhere pip chooses.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# JupyterLab refuses to run as root unless asked to.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)
# Everything make test runs goes through this one pytest call: unit tests, then every student and solution
# notebook executed by nbval in fast mode, two workers, one notebook per worker at a time.
# One BLAS/OpenMP thread per worker: two workers on two cores; more threads only oversubscribe the cores
# (OpenMP barriers then stall, which made small-op tests 5-10x slower here).
TEST_ENV := DDPM_COURSE_FAST=1 HF_HUB_OFFLINE=1 MPLBACKEND=Agg OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PYTEST_ARGS ?= -n 2 --dist loadscope --nbval-lax --nbval-current-env

.PHONY: setup lab test lint notebooks check-notebooks clean-venv site test-browser

setup: $(STAMP)

# The virtual environment with torch; both set-ups below start with it.
define make_venv
	@test -x $(BIN)/python || { \
	  $(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 13) else "make: need Python 3.10-3.13 as $(PYTHON), found %d.%d" % v)' && \
	  echo "make: creating $(VENV) with $$($(PYTHON) --version)" && \
	  { $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	    echo "make: '$(PYTHON) -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2; exit 1; }; }; }
	@if ! $(BIN)/python -c 'import torch' 2>/dev/null && [ "$$(uname -s)-$$(uname -m)" = Linux-x86_64 ]; then \
	  echo "make: installing $(TORCH_PINS)"; $(BIN)/python -m pip install $(TORCH_PINS); fi
endef

# The developer's set-up (make test, make notebooks): the package with its test and authoring tools.
$(STAMP): pyproject.toml
	$(make_venv)
	$(BIN)/python -m pip install -e '.[dev,lab]'
	@touch $(STAMP) $(LAB_STAMP)

# The learner's set-up: the package, JupyterLab and widgets, none of the developer tools.
$(LAB_STAMP): pyproject.toml
	$(make_venv)
	$(BIN)/python -m pip install -e '.[lab]'
	@touch $(LAB_STAMP)

# Served from the course root, so the notebooks' Solutions links and the file browser reach solutions/ and
# docs/; the learner works in copies under $(WORK)/ that `git pull` never touches.
lab: $(LAB_STAMP)
	$(BIN)/python -m ddpm_course.workspace --root . --work $(WORK)
	$(BIN)/jupyter lab $(LAB_ARGS) --ServerApp.root_dir="$(CURDIR)" \
	  --LabApp.default_url=/lab/tree/$(WORK)/00_welcome.ipynb

lint: $(STAMP)
	$(BIN)/ruff check .

check-notebooks: $(STAMP)
	$(BIN)/python -m ddpm_course.authoring --check

test: lint check-notebooks
	$(TEST_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS) tests notebooks solutions

notebooks: $(STAMP)
	$(BIN)/python -m ddpm_course.authoring

clean-venv:
	rm -rf $(VENV)

# --- the course website and the browser test (neither is part of make test) ---
SITE_STAMP := $(VENV)/.installed-site
BROWSER_STAMP := $(VENV)/.installed-browser
CHROMIUM ?= /usr/bin/chromium

$(SITE_STAMP): $(STAMP)
	$(BIN)/python -m pip install -e '.[site]'
	@touch $@

$(BROWSER_STAMP): $(STAMP)
	$(BIN)/python -m pip install -e '.[browser]'
	@touch $@

# --strict: a build warning (a broken link, a missing page) fails the build. The notebooks run in fast mode
# for their pages' outputs (about 10 CPU-minutes the first time; build/site-notebooks/ caches them).
SITE_ENV := DDPM_COURSE_FAST=1 HF_HUB_OFFLINE=1 NO_MKDOCS_2_WARNING=1
site: $(SITE_STAMP)
	$(SITE_ENV) $(BIN)/mkdocs build --strict --clean --site-dir _site

# Playwright's Python package drives Debian's chromium; Playwright's own browser download is never used.
test-browser: $(BROWSER_STAMP) site
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  echo "make: installing Debian's chromium" && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
	  { echo "make: test-browser needs Chromium at $(CHROMIUM): apt-get install chromium (as root)," \
	    "or pass CHROMIUM=/path/to/chromium" >&2; exit 1; }
	DDPM_COURSE_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest -p no:cacheprovider -v browser_tests
