# YOUNG — make is the driver: install, test, demo, and the whole chain (make all INPUT=dir).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# this Makefile's folder: `make -f /opt/young/Makefile ...` works from any folder (the images do that)
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
PYTHON ?= python3
VENV ?= $(ROOT)/.venv
BIN := $(VENV)/bin
# EDITABLE=-e for a development checkout; containers install with EDITABLE= (a plain copy)
EDITABLE ?= -e
STAMP := $(VENV)/.young-installed
PYTEST_ARGS ?=

.PHONY: help install test demo lock clean

help:
	@echo "make install   create $(VENV) with the pinned dependencies (constraints.txt) and YOUNG"
	@echo "make test      install, then the linter and the test suite"
	@echo "make demo      install, simulate the demo field, run the whole chain, write demo-out/"
	@echo "make all INPUT=dir [OUTPUT=dir] [CONFIG=young.yaml] [SKIP='fnoise wisp bkg'] [LAYOUT=combined|program|directory]"
	@echo "         [NAME=name] [DIR_PREFIX=prefix] [START=uncal|rate|cal] [MPI=N] [JOBS=N] [KEEP=all|final]"

install: $(STAMP)

$(STAMP): $(ROOT)/constraints.txt $(ROOT)/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(ROOT)/constraints.txt $(EDITABLE) '$(ROOT)[test]'
	@touch $@

test: install
	$(BIN)/ruff check --quiet $(ROOT)
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
DEMO_OUT ?= demo-out
DEMO_JOBS ?= 2
DEMO_STEPS := refs stage1 fnoise stage2 wisp bkg stage3
# the demo: simulate (once), run every step of the chain with make -j, time each, write the QA report
demo: install
	@test -f $(DEMO_DIR)/young.yaml || $(BIN)/young-sim $(DEMO_DIR) --preset demo --seed 1 --force > /dev/null
	@mkdir -p $(DEMO_OUT) && : > $(DEMO_OUT)/timings.tsv
	@for step in $(DEMO_STEPS); do \
	  t0=$$(date +%s.%N); \
	  $(MAKE) --no-print-directory -j $(DEMO_JOBS) $$step INPUT=$(DEMO_DIR)/raw OUTPUT=$(DEMO_OUT) \
	    CONFIG=$(DEMO_DIR)/young.yaml JOBS=$(DEMO_JOBS) || exit 1; \
	  printf '%s\t%s\t%s\n' $$step $$t0 $$(date +%s.%N) >> $(DEMO_OUT)/timings.tsv; \
	  echo "demo: $$step done"; \
	done
	$(BIN)/python -m young.sim.report $(DEMO_DIR) $(DEMO_OUT)

# ---------------------------------------------------------------------------------------------
# The chain: make all INPUT=dir [OUTPUT=dir] [CONFIG=young.yaml] [SKIP="fnoise wisp bkg"]
#            [LAYOUT=combined|program|directory] [NAME=name] [DIR_PREFIX=prefix] [START=uncal|rate|cal]
#            [MPI=N] [MPIRUN=mpiexec] [JOBS=N] [KEEP=all|final]
# INPUT is searched recursively (a MAST download as it comes); only NIRCam imaging enters the chain,
# each exposure from the earliest of its _uncal, _rate, _cal files present (a _rate or _cal is linked
# into the output tree under the chain's name and goes on from there):
# uncal -> rate -> 1f_rate -> 1f_cal -> 1f_wisp_cal -> 1f_wisp_bkg_cal -> <tree>/mosaics/<filter>/
# Which files, which output tree (LAYOUT) and every product name come from young.contract.makeplan,
# read once per run, writing nothing. Per-exposure products are kept (.SECONDARY: a missing one is not
# remade while what follows it is up to date; KEEP=final deletes them once stage 3 of their tree has
# finished), a failed recipe deletes its target (.DELETE_ON_ERROR; the tools themselves never leave
# half-written files), `make -j N` runs files in parallel, `make -n` is a true dry run, and each step
# has its own target.
# ---------------------------------------------------------------------------------------------
INPUT ?=
OUTPUT ?=
CONFIG ?=
SKIP ?=
LAYOUT ?=
NAME ?=
DIR_PREFIX ?=
START ?=
MPI ?=
MPIRUN ?= $(BIN)/mpiexec
# all: keep every intermediate product; final: only the last cal of each exposure and the mosaics
KEEP ?= all
# filters young-stage3 reduces at once after the reference one (its --jobs; memory-capped by the tool)
JOBS ?= 1
YOUNG_BIN ?= $(BIN)
CHAIN_GOALS := all check-input refs stage1 fnoise stage2 wisp bkg stage3

STEPS_KNOWN := fnoise wisp bkg
CFG_OPT := $(if $(CONFIG),--config $(abspath $(CONFIG)),)
# make splits words at spaces: a path with one cannot be a target or prerequisite
$(foreach v,INPUT OUTPUT CONFIG,$(if $(word 2,$($(v))),$(error $(v) has a space in its path ('$($(v))'): \
  make cannot use it; link the folder to a path without spaces, or pipe the tools (see README))))
ifeq ($(filter $(KEEP),all final),)
  $(error KEEP must be 'all' or 'final', not '$(KEEP)')
endif

ifneq ($(filter $(CHAIN_GOALS),$(MAKECMDGOALS)),)
# the plan needs the installed package: install first unless this is a dry run
ifeq ($(wildcard $(YOUNG_BIN)/python),)
  ifneq ($(findstring n,$(firstword -$(MAKEFLAGS))),)
    $(error $(YOUNG_BIN)/python: YOUNG is not installed; run make install first)
  endif
  $(info make all: installing YOUNG into $(VENV) first)
  $(if $(shell $(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) install >&2 && echo ok),,$(error make install failed))
endif
# skip_steps from the config file join SKIP (seed names mapped, unknown names are an error)
CFG_SKIP := $(if $(CONFIG),$(shell $(YOUNG_BIN)/python -m young.contract.config skip-steps $(CONFIG) || echo __bad_config__),)
ALL_SKIP := $(sort $(SKIP) $(CFG_SKIP))
ifneq ($(filter-out $(STEPS_KNOWN),$(ALL_SKIP)),)
  $(error SKIP: unknown step(s) '$(filter-out $(STEPS_KNOWN),$(ALL_SKIP))' (known: $(STEPS_KNOWN)))
endif
define NL


endef
opt = $(if $(2),--$(1) $(2),)
$(eval $(subst @@,$(NL),$(shell $(YOUNG_BIN)/python -m young.contract.makeplan $(call opt,input,$(INPUT)) \
  $(call opt,output,$(OUTPUT)) $(call opt,layout,$(LAYOUT)) $(call opt,name,$(NAME)) \
  $(call opt,dir-prefix,$(DIR_PREFIX)) $(call opt,start,$(START)) $(CFG_OPT) --skip '$(ALL_SKIP)')))
ifneq ($(Y_ERROR),)
  $(error $(Y_ERROR))
endif
endif

O := $(Y_OUT)
PREFETCH := $(O)/.young-refs.list
# after the prefetch every tool computes with CRDS serverless and read-only (no N processes hitting a server)
OFFLINE := YOUNG_CRDS_OFFLINE=1
# a plan entry is 'a|b': its first and second path
src_of = $(word 1,$(subst |, ,$(1)))
dst_of = $(word 2,$(subst |, ,$(1)))
# the tree (product folder) of a product path: its folder
tree_of = $(patsubst %/,%,$(dir $(1)))

.PHONY: all check-input refs stage1 fnoise stage2 wisp bkg stage3
# every target is secondary: never deleted by make, and one that is missing is not remade while what
# follows it is up to date -- so resume works after KEEP=final removed the intermediate products
.SECONDARY:
.DELETE_ON_ERROR:
INTERMEDIATES := $(filter-out $(Y_BCALS),$(sort $(Y_RATES) $(Y_FRATES) $(Y_CALS) $(Y_WCALS)))
MOSAIC_LISTS := $(addsuffix /mosaics/young-stage3.list,$(Y_DIRS))

all: stage3

check-input: | install
	@echo "make all: $(words $(Y_SOURCES)) exposures ($(Y_COUNTS)) into $(words $(Y_DIRS)) tree(s) under $(O)" >&2

refs: check-input $(PREFETCH)
stage1: check-input $(Y_RATES)
fnoise: check-input $(Y_FRATES)
stage2: check-input $(Y_CALS)
wisp: check-input $(Y_WCALS)
bkg: check-input $(Y_BCALS)
stage3: check-input $(MOSAIC_LISTS)

# CRDS references fetched once, before any parallel stage
$(PREFETCH): $(Y_SOURCES) | $(Y_DIRS)
	@mkdir -p $(@D)
	$(YOUNG_BIN)/young-refs -q $(CFG_OPT) $(Y_SOURCES) > $@.tmp && mv $@.tmp $@

$(Y_DIRS):
	mkdir -p $@

# an exposure that starts from a downloaded _rate or _cal: that file, hard-linked (copied across file
# systems) into its tree under the chain's name; the input itself is never touched
define LINK_RULE
$(call dst_of,$(1)): $(call src_of,$(1)) | $(call tree_of,$(call dst_of,$(1))) $(PREFETCH)
	ln -f $$< $$@ 2>/dev/null || { cp -p $$< $$@.part && mv $$@.part $$@; }
endef
$(foreach e,$(Y_LINKS),$(eval $(call LINK_RULE,$(e))))

# stage 1: one rule per exposure (make -j), or one MPI launch per tree (MPI=N)
ifeq ($(MPI),)
define STAGE1_RULE
$(call dst_of,$(1)): $(call src_of,$(1)) | $(PREFETCH)
	$(OFFLINE) $(YOUNG_BIN)/young-stage1 -q $(CFG_OPT) -o $(call tree_of,$(call dst_of,$(1))) $$< > /dev/null
endef
$(foreach e,$(Y_STAGE1),$(eval $(call STAGE1_RULE,$(e))))
else
define STAGE1_MPI_RULE
$(foreach e,$(Y_STAGE1),$(if $(filter $(1),$(call tree_of,$(call dst_of,$(e)))),$(call dst_of,$(e)))) &: \
  $(foreach e,$(Y_STAGE1),$(if $(filter $(1),$(call tree_of,$(call dst_of,$(e)))),$(call src_of,$(e)))) | $(PREFETCH)
	$(OFFLINE) $(MPIRUN) -n $(MPI) $(YOUNG_BIN)/young-stage1 -q $(CFG_OPT) -o $(1) $$^ > /dev/null
endef
$(foreach d,$(sort $(foreach e,$(Y_STAGE1),$(call tree_of,$(call dst_of,$(e))))),$(eval $(call STAGE1_MPI_RULE,$(d))))
endif

# corrections and stage 2 act on files in the trees (pattern rules, shortest stem wins)
$(O)/%_1f_rate.fits: $(O)/%_rate.fits
	$(OFFLINE) $(YOUNG_BIN)/young-fnoise -q $(CFG_OPT) $< > /dev/null

ifeq ($(MPI),)
$(O)/%_cal.fits: $(O)/%_rate.fits
	$(OFFLINE) $(YOUNG_BIN)/young-stage2 -q $(CFG_OPT) $< > /dev/null
else
ifneq ($(Y_S2OUT),)
$(Y_S2OUT) &: $(Y_FRATES)
	$(OFFLINE) $(MPIRUN) -n $(MPI) $(YOUNG_BIN)/young-stage2 -q $(CFG_OPT) $^ > /dev/null
endif
endif

# a short-wave file's wisp mask comes from its long-wave partner's cal file: that one first
# (nrca1-4 -> nrcalong, nrcb1-4 -> nrcblong; only the partner, so one new exposure remakes no other)
$(foreach e,$(Y_PARTNERS),$(eval $(call src_of,$(e)): | $(call dst_of,$(e))))

$(O)/%_wisp_cal.fits: $(O)/%_cal.fits
	$(OFFLINE) $(YOUNG_BIN)/young-wisp -q $(CFG_OPT) $< > /dev/null

$(O)/%_bkg_cal.fits: $(O)/%_cal.fits
	$(OFFLINE) $(YOUNG_BIN)/young-bkg -q $(CFG_OPT) $< > /dev/null

# stage 3: all filters of a tree at once (one grid, aligned to the longest wavelength);
# the list of products it printed is the target
define STAGE3_RULE
$(1)/mosaics/young-stage3.list: $(filter $(1)/%,$(Y_BCALS))
	@mkdir -p $$(@D)
	$(OFFLINE) $(YOUNG_BIN)/young-stage3 -q $(CFG_OPT) --jobs $(JOBS) -o $$(@D) $$^ > $$@.tmp && mv $$@.tmp $$@
	$(if $(filter final,$(KEEP)),rm -f $(filter $(1)/%,$(INTERMEDIATES)))
endef
$(foreach d,$(Y_DIRS),$(eval $(call STAGE3_RULE,$(d))))
