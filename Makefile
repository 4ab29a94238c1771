# `make repro`: set up .venv and run the whole pipeline on the embedded synthetic data.
# `make test`:  set up .venv if needed and run the test suite (what CI runs).
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
# stage commands in dvc.yaml call `python`: make it the venv's
export PATH := $(BIN):$(PATH)

.PHONY: install repro test test-fast full push pull plots clean-venv

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

test: $(STAMP)
	python -m pytest -q

test-fast: $(STAMP)
	python -m pytest -q -m "not slow"

# the real CERNBox data at full scale with the references' hyperparameters, as a named experiment
full: $(STAMP)
	dvc exp run -n full $$(python -m e2e preset full)

push: $(STAMP)
	dvc push

pull: $(STAMP)
	dvc pull

plots: $(STAMP)
	dvc plots show --open=false || dvc plots show

clean-venv:
	rm -rf $(VENV)
