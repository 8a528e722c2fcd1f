# YOUNG — make is the driver: install, test, demo, and the whole chain (make all INPUT=dir).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# EDITABLE=-e for a development checkout; containers install with EDITABLE= (a plain copy)
EDITABLE ?= -e
STAMP := $(VENV)/.young-installed
PYTEST_ARGS ?=

.PHONY: help install test demo lock clean

help:
	@echo "make install   create $(VENV) with the pinned dependencies (constraints.txt) and YOUNG"
	@echo "make test      install, then run the test suite"
	@echo "make demo      install, simulate the demo field, run the whole chain, write demo-out/"
	@echo "make all INPUT=dir [OUTPUT=dir] [CONFIG=young.yaml] [SKIP='fnoise wisp bkg'] [MPI=N]"

install: $(STAMP)

$(STAMP): constraints.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt $(EDITABLE) '.[test]'
	@touch $@

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# regenerate the pins from a fresh resolution of pyproject's dependencies
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/pip install --quiet '.[test]'
	( echo "# Pinned versions of every package YOUNG installs (make install, Dockerfile, apptainer.def)."; \
	  echo "# Regenerate with: make lock"; .lockenv/bin/pip freeze --exclude young ) > constraints.txt
	rm -rf .lockenv

clean:
	rm -rf demo demo-out bench/out .pytest_cache

DEMO_DIR ?= demo
demo: install
	$(BIN)/young-sim $(DEMO_DIR) --preset demo --seed 1 --force > /dev/null
	find $(DEMO_DIR)/raw -name '*_uncal.fits' | sort \
	  | $(BIN)/young-stage1 --config $(DEMO_DIR)/young.yaml \
	  | $(BIN)/young-stage2 --config $(DEMO_DIR)/young.yaml
