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
	@echo "make all INPUT=dir [OUTPUT=dir] [CONFIG=young.yaml] [SKIP='fnoise wisp bkg'] [MPI=N] [JOBS=N] [KEEP=final]"

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
#            [MPI=N] [MPIRUN=mpiexec] [LAYOUT=combined|program] [JOBS=N]
# uncal -> rate -> 1f_rate -> 1f_cal -> 1f_wisp_cal -> 1f_wisp_bkg_cal -> OUTPUT/mosaics/<filter>/
# Per-exposure products are kept (.SECONDARY: a missing one is not remade while what follows it is up
# to date; KEEP=final deletes them once stage 3 of their folder has finished), a failed recipe deletes its target
# (.DELETE_ON_ERROR; the tools themselves never leave half-written files), `make -j N` runs
# files in parallel, `make -n` is a true dry run, and each step has its own target.
# ---------------------------------------------------------------------------------------------
INPUT ?=
OUTPUT ?= young-out
CONFIG ?=
SKIP ?=
MPI ?=
MPIRUN ?= $(BIN)/mpiexec
LAYOUT ?= combined
# all: keep every intermediate product; final: only the last cal of each exposure and the mosaics
KEEP ?= all
# filters young-stage3 reduces at once after the reference one (its --jobs; memory-capped by the tool)
JOBS ?= 1
YOUNG_BIN ?= $(BIN)

STEPS_KNOWN := fnoise wisp bkg
CFG_OPT := $(if $(CONFIG),--config $(abspath $(CONFIG)),)
# skip_steps from the config file join SKIP (seed names mapped, unknown names are an error)
CFG_SKIP := $(if $(CONFIG),$(shell $(YOUNG_BIN)/python -m young.contract.config skip-steps $(CONFIG) || echo __bad_config__),)
ALL_SKIP := $(sort $(SKIP) $(CFG_SKIP))
ifneq ($(filter-out $(STEPS_KNOWN),$(ALL_SKIP)),)
  $(error SKIP: unknown step(s) '$(filter-out $(STEPS_KNOWN),$(ALL_SKIP))' (known: $(STEPS_KNOWN)))
endif
# make splits words at spaces: a path with one cannot be a target or prerequisite
$(foreach v,INPUT OUTPUT CONFIG,$(if $(word 2,$($(v))),$(error $(v) has a space in its path ('$($(v))'): \
  make cannot use it; link the folder to a path without spaces, or pipe the tools (see README))))
ifeq ($(filter $(KEEP),all final),)
  $(error KEEP must be 'all' or 'final', not '$(KEEP)')
endif
ifeq ($(filter $(LAYOUT),combined program),)
  $(error LAYOUT must be 'combined' or 'program', not '$(LAYOUT)')
endif

UNCAL := $(sort $(wildcard $(INPUT)/*_uncal.fits))
O := $(abspath $(OUTPUT))
# product folder of an exposure: OUTPUT/ or OUTPUT/<program>/ (jwPPPPP...)
dir_of = $(O)$(if $(filter program,$(LAYOUT)),/$(shell echo $(notdir $(1)) | cut -c1-7),)
base_of = $(patsubst %_uncal.fits,%,$(notdir $(1)))

T1F := $(if $(filter fnoise,$(ALL_SKIP)),,_1f)
TWISP := $(if $(filter wisp,$(ALL_SKIP)),,_wisp)
TBKG := $(if $(filter bkg,$(ALL_SKIP)),,_bkg)

RATES := $(foreach u,$(UNCAL),$(call dir_of,$(u))/$(call base_of,$(u))_rate.fits)
FRATES := $(foreach u,$(UNCAL),$(call dir_of,$(u))/$(call base_of,$(u))$(T1F)_rate.fits)
CALS := $(foreach u,$(UNCAL),$(call dir_of,$(u))/$(call base_of,$(u))$(T1F)_cal.fits)
WCALS := $(foreach u,$(UNCAL),$(call dir_of,$(u))/$(call base_of,$(u))$(T1F)$(TWISP)_cal.fits)
BCALS := $(foreach u,$(UNCAL),$(call dir_of,$(u))/$(call base_of,$(u))$(T1F)$(TWISP)$(TBKG)_cal.fits)
PROGDIRS := $(sort $(foreach u,$(UNCAL),$(call dir_of,$(u))))
MOSAIC_LISTS := $(addsuffix /mosaics/young-stage3.list,$(PROGDIRS))
PREFETCH := $(O)/.young-refs.list
# after the prefetch every tool computes with CRDS serverless and read-only (no N processes hitting a server)
OFFLINE := YOUNG_CRDS_OFFLINE=1

.PHONY: all check-input refs stage1 fnoise stage2 wisp bkg stage3
# every target is secondary: never deleted by make, and one that is missing is not remade while what
# follows it is up to date -- so resume works after KEEP=final removed the intermediate products
.SECONDARY:
.DELETE_ON_ERROR:
INTERMEDIATES := $(filter-out $(BCALS),$(sort $(RATES) $(FRATES) $(CALS) $(WCALS)))

all: stage3

check-input: | install
	@test -n "$(INPUT)" || { echo "make all: give INPUT=dir (a folder of *_uncal.fits)" >&2; exit 2; }
	@test -n "$(UNCAL)" || { echo "make all: $(INPUT): no *_uncal.fits files" >&2; exit 2; }

refs: check-input $(PREFETCH)
stage1: check-input $(RATES)
fnoise: check-input $(FRATES)
stage2: check-input $(CALS)
wisp: check-input $(WCALS)
bkg: check-input $(BCALS)
stage3: check-input $(MOSAIC_LISTS)

# CRDS references fetched once, before any parallel stage
$(PREFETCH): $(UNCAL) | $(PROGDIRS)
	@mkdir -p $(@D)
	$(YOUNG_BIN)/young-refs -q $(CFG_OPT) $(UNCAL) > $@.tmp && mv $@.tmp $@

$(PROGDIRS):
	mkdir -p $@

# stage 1: one rule per exposure (make -j), or one MPI launch per product folder (MPI=N)
ifeq ($(MPI),)
define STAGE1_RULE
$(call dir_of,$(1))/$(call base_of,$(1))_rate.fits: $(1) | $(PREFETCH)
	$(OFFLINE) $(YOUNG_BIN)/young-stage1 -q $(CFG_OPT) -o $(call dir_of,$(1)) $(1) > /dev/null
endef
$(foreach u,$(UNCAL),$(eval $(call STAGE1_RULE,$(u))))
else
define STAGE1_MPI_RULE
$(filter $(1)/%,$(RATES)) &: $(foreach u,$(UNCAL),$(if $(filter $(1),$(call dir_of,$(u))),$(u))) | $(PREFETCH)
	$(OFFLINE) $(MPIRUN) -n $(MPI) $(YOUNG_BIN)/young-stage1 -q $(CFG_OPT) -o $(1) $$^ > /dev/null
endef
$(foreach d,$(PROGDIRS),$(eval $(call STAGE1_MPI_RULE,$(d))))
endif

# corrections and stage 2 act on files in the product folders (pattern rules, shortest stem wins)
$(O)/%_1f_rate.fits: $(O)/%_rate.fits
	$(OFFLINE) $(YOUNG_BIN)/young-fnoise -q $(CFG_OPT) $< > /dev/null

ifeq ($(MPI),)
$(O)/%_cal.fits: $(O)/%_rate.fits
	$(OFFLINE) $(YOUNG_BIN)/young-stage2 -q $(CFG_OPT) $< > /dev/null
else
$(CALS) &: $(FRATES)
	$(OFFLINE) $(MPIRUN) -n $(MPI) $(YOUNG_BIN)/young-stage2 -q $(CFG_OPT) $^ > /dev/null
endif

# a short-wave file's wisp mask comes from its long-wave partner's cal file: that one first
# (nrca1-4 -> nrcalong, nrcb1-4 -> nrcblong; only the partner, so one new exposure remakes no other)
lw_base = $(strip $(foreach m,a b,$(foreach k,1 2 3 4,$(if $(filter %_nrc$(m)$(k),$(1)),$(1:%_nrc$(m)$(k)=%_nrc$(m)long)))))
define WISP_PARTNER
$(if $(call lw_base,$(call base_of,$(1))),$(if $(filter $(dir $(1))$(call lw_base,$(call base_of,$(1)))_uncal.fits,$(UNCAL)),\
$(call dir_of,$(1))/$(call base_of,$(1))$(T1F)$(TWISP)_cal.fits: | $(call dir_of,$(1))/$(call lw_base,$(call base_of,$(1)))$(T1F)_cal.fits))
endef
ifneq ($(TWISP),)
$(foreach u,$(UNCAL),$(eval $(call WISP_PARTNER,$(u))))
endif

$(O)/%_wisp_cal.fits: $(O)/%_cal.fits
	$(OFFLINE) $(YOUNG_BIN)/young-wisp -q $(CFG_OPT) $< > /dev/null

$(O)/%_bkg_cal.fits: $(O)/%_cal.fits
	$(OFFLINE) $(YOUNG_BIN)/young-bkg -q $(CFG_OPT) $< > /dev/null

# stage 3: all filters of a product folder at once (one grid, aligned to the longest wavelength);
# the list of products it printed is the target
define STAGE3_RULE
$(1)/mosaics/young-stage3.list: $(filter $(1)/%,$(BCALS))
	@mkdir -p $$(@D)
	$(OFFLINE) $(YOUNG_BIN)/young-stage3 -q $(CFG_OPT) --jobs $(JOBS) -o $$(@D) $$^ > $$@.tmp && mv $$@.tmp $$@
	$(if $(filter final,$(KEEP)),rm -f $(filter $(1)/%,$(INTERMEDIATES)))
endef
$(foreach d,$(PROGDIRS),$(eval $(call STAGE3_RULE,$(d))))
