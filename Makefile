# Set-up and test entry points. The README shows two commands: `make demo` and `make test`.
# Both build what they need from scratch on a fresh machine (python3 >= 3.11, make, PyPI access).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
PIP_VERSION := 26.3
VENV := .venv
# Tools that pin dependencies of their own (aws-sam-cli pins boto3, checkov pins half of PyPI) each get
# a virtualenv .venv-<tool> from requirements/<tool>.txt, locked by requirements/<tool>-constraints.txt.
TOOLS := sam checkov
# CI has 2 cores; override with `make test PYTEST_WORKERS=auto` (or 0 for no xdist).
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=

# Each environment is stamped with a hash of the files that define it, so an edited pin reinstalls
# and an unchanged environment costs nothing. (`make clean` rebuilds from nothing.)
inputs_hash = $(shell { cat $(1); echo "pip==$(PIP_VERSION)"; } | sha256sum | cut -c1-16)
DEV_INPUTS := requirements/dev.txt requirements/constraints.txt functions/requirements.txt pyproject.toml
tool_inputs = requirements/$(1).txt requirements/$(1)-constraints.txt

PIP_QUIET := --disable-pip-version-check --no-input --progress-bar off --quiet

.PHONY: help venv $(TOOLS:%=%-venv) browser test demo lint lock clean check-python

help:
	@echo "make demo          run the local end-to-end job on an embedded, emulated AWS"
	@echo "make test          run every test (unit, template, state machine, sam local invoke), building environments first"
	@echo "make sam-local     only the sam local invoke of every function in Lambda containers (Debian, root: sets up Docker)"
	@echo "make lint          ruff check + ruff format --check"
	@echo "make venv          .venv with the pinned dev dependencies and batchpipe (editable)"
	@echo "make <tool>-venv   .venv-<tool> for a tool with pins of its own: $(TOOLS)"
	@echo "make browser       headless Chromium (Debian package) for the run page's browser test"
	@echo "make lock          regenerate requirements/*constraints.txt from scratch venvs"
	@echo "make clean         remove the environments and build output"

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
	  f"batchpipe needs Python >= 3.11, {sys.executable} is {sys.version.split()[0]} (set PYTHON=...)")'

venv: $(VENV)/.installed-$(call inputs_hash,$(DEV_INPUTS))

$(VENV)/.installed-%: | check-python
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install $(PIP_QUIET) pip==$(PIP_VERSION)
	$(VENV)/bin/python -m pip install $(PIP_QUIET) -r requirements/dev.txt -c requirements/constraints.txt
	$(VENV)/bin/python -m pip install $(PIP_QUIET) --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

define TOOL_VENV
$(1)-venv: .venv-$(1)/.installed-$(call inputs_hash,$(call tool_inputs,$(1)))

.venv-$(1)/.installed-%: | check-python
	$$(PYTHON) -m venv .venv-$(1)
	.venv-$(1)/bin/python -m pip install $$(PIP_QUIET) pip==$$(PIP_VERSION)
	.venv-$(1)/bin/python -m pip install $$(PIP_QUIET) -r requirements/$(1).txt -c requirements/$(1)-constraints.txt
	rm -f .venv-$(1)/.installed-*
	touch $$@
endef
$(foreach tool,$(TOOLS),$(eval $(call TOOL_VENV,$(tool))))

# The run page's browser test (tests/local/test_run_page_browser.py) opens a local run's report.html
# in headless Chromium, Debian's `chromium` package (~115 MB to download on a bare image; nothing
# when it is installed, which is checked first). It needs root (CI) or password-less sudo; otherwise
# this says so and the test skips, or fails under CI=true.
CHROMIUM_PACKAGES := chromium fonts-dejavu-core
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "make browser: no apt-get here; install Chromium yourself (or set CHROMIUM=/path/to/chrome)"; exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; elif sudo -n true 2>/dev/null; then sudo="sudo"; else \
	  echo "make browser: Chromium is missing; run: sudo apt-get install chromium"; exit 0; fi; \
	$$sudo apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $(CHROMIUM_PACKAGES) >/dev/null

# The tests find each tool through an environment variable (SAM_CLI, CHECKOV).
# --dist loadgroup: tests that share something (a port, a directory) carry
# @pytest.mark.xdist_group("name") and then run on one worker, one after the other.
# tests/samlocal runs in a pytest process of its own, beside the others rather than after them: it is
# minutes of set-up and container starts, mostly waiting (about one CPU-minute once set up; README,
# "Development"). Its own process, so that it waits on containers without holding one of the two
# xdist workers, and its module fixtures (a served engine, a Docker network) exist once. Its output
# follows the others'. (xdist_group needs pytest 8.4: requirements/dev.txt says why.)
SAM_LOCAL_LOG := .aws-sam/sam-local-test.log
test: venv $(TOOLS:%=%-venv) browser
	mkdir -p $(dir $(SAM_LOCAL_LOG))
	SAM_CLI="$(CURDIR)/.venv-sam/bin/sam" $(VENV)/bin/pytest -p no:cacheprovider --durations=0 \
	  $(PYTEST_ARGS) tests/samlocal >$(SAM_LOCAL_LOG) 2>&1 & samlocal=$$!; \
	status=0; \
	SAM_CLI="$(CURDIR)/.venv-sam/bin/sam" CHECKOV="$(CURDIR)/.venv-checkov/bin/checkov" \
	  $(VENV)/bin/pytest \
	  $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadgroup) \
	  --durations=15 $(PYTEST_ARGS) --ignore=tests/samlocal tests || status=$$?; \
	wait $$samlocal || status=$$?; \
	echo "== tests/samlocal (sam local invoke), run beside the tests above:"; cat $(SAM_LOCAL_LOG); \
	exit $$status

# `sam local invoke` of every function against the served embedded AWS (tests/samlocal) alone; `make test`
# runs it too. The test does its own set-up (apt docker.io, dockerd, the Lambda base image, sam build;
# README "Development"), each step skipped when already done.
sam-local: venv sam-venv
	SAM_CLI="$(CURDIR)/.venv-sam/bin/sam" \
	  $(VENV)/bin/pytest --durations=0 $(PYTEST_ARGS) tests/samlocal

# The demo's injected faults leave some objects failed: it ends PARTIAL, exit status 3 (docs/LOCAL.md),
# which is the outcome it demonstrates, so 3 counts as success here; any other non-zero status fails.
demo: venv
	$(VENV)/bin/batchpipe local run --objects 2000 --faults examples/local/faults.json || [ $$? -eq 3 ]

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The locks are `pip freeze` of throwaway venvs built from the top-level pins alone, so they hold
# exactly what those pins pull in today (run after changing any requirements/*.txt pin).
lock: | check-python
	scratch=$$(mktemp -d) && trap 'rm -rf "$$scratch"' EXIT && \
	for name in dev $(TOOLS); do \
	  lock=requirements/$$([ $$name = dev ] && echo constraints || echo $$name-constraints).txt; \
	  $(PYTHON) -m venv "$$scratch/$$name"; \
	  "$$scratch/$$name/bin/python" -m pip install $(PIP_QUIET) pip==$(PIP_VERSION); \
	  "$$scratch/$$name/bin/python" -m pip install $(PIP_QUIET) -r requirements/$$name.txt; \
	  { echo "# Full transitive lock of requirements/$$name.txt: generated by \`make lock\` (pip freeze of a fresh venv)."; \
	    echo "# Python $$("$$scratch/$$name/bin/python" -c 'import platform; print(platform.python_version())'), pip $(PIP_VERSION). Do not edit by hand."; \
	    "$$scratch/$$name/bin/python" -m pip freeze --exclude-editable; } > "$$lock"; \
	  echo "wrote $$lock"; \
	done

clean:
	rm -rf $(VENV) $(TOOLS:%=.venv-%) .aws-sam .pytest_cache .ruff_cache .hypothesis
