# `make repro`: set up .venv and run the whole pipeline on the embedded synthetic data.
# `make test`:  set up .venv if needed and run the test suite (what CI runs).
# `make review BASE=main`: review/report.md with metrics, params and key plots vs BASE, for a pull request.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
# stage commands in dvc.yaml call `python`: make it the venv's
export PATH := $(BIN):$(PATH)
BASE   ?= main
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install repro test lint test-fast full push pull plots plots-diff clean-venv browser review plots-html compare

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $@

repro: $(STAMP)
	test -d .git || (git init -q && git add -A && git commit -qm "initial snapshot")
	time dvc repro
	python -m e2e summary

# the suite on one process per core, at most 4 (pytest-xdist); each test file stays on one process, so its
# module fixtures are built once. `python -m pytest` alone runs it on one process.
PYTEST := python -m pytest -q -n auto --maxprocesses=4 --dist loadfile

test: $(STAMP)
	$(PYTEST)

# ruff (lint rules and format) on the whole tree, mypy on src/: what .ci/run and the CI workflow run first
lint: $(STAMP)
	ruff check .
	ruff format --check .
	mypy

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# headless Chromium and its driver for tests/system/test_plots_browser.py (Debian packages, needs root or sudo),
# when missing; `make test` never runs it: without a browser that one test is skipped. .ci/run calls it.
browser:
	@if ! { command -v chromium || command -v chromium-browser; } >/dev/null || ! command -v chromedriver >/dev/null; then \
	  echo "installing chromium and chromium-driver for the offline plots test"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

# the real CERNBox data at full scale with the references' hyperparameters, as a named experiment. Without
# a visible GPU it stops before anything starts (one error line) unless asked for the CPU: make full DEVICE=cpu
full: $(STAMP)
	args="$$(python -m e2e preset full $(if $(DEVICE),--device $(DEVICE)))" && dvc exp run -n full $$args

push: $(STAMP)
	dvc push

pull: $(STAMP)
	dvc pull

plots: $(STAMP)
	dvc plots show

# `dvc exp show` on one screen (src/e2e/reports/compare.py): the params that differ, each changed task's test metric with
# its 95 % interval, validation metric and ensemble mean member; best validation first. TASK=quark_gluon: that
# task alone. `dvc exp show` alone shows everything.
compare: $(STAMP)
	python -m e2e compare $(if $(TASK),--task $(TASK)) $(ARGS)

# the plots of one task (TASK=quark_gluon; all three without it), workspace vs $(BASE), in dvc_plots/index.html.
# DVC matches --targets from the start of each plot id, so a task's folder selects its plots.
plots-diff: $(STAMP)
	dvc plots diff $(BASE) $(if $(TASK),--targets metrics/$(TASK)/) $(ARGS)

# metrics and params diffs and the key plots (PNG, rendered offline) of the workspace vs $(BASE)
review: $(STAMP)
	python scripts/review.py $(BASE) --out review

# rebuild .dvc/offline_plots.html (vega, vega-lite, vega-embed inlined) from npm after a version bump
plots-html:
	python scripts/build_plots_html.py

clean-venv:
	rm -rf $(VENV)
