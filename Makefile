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
	@echo "         [NAME=name] [DIR_PREFIX=prefix] [START=uncal|rate|cal] [MPI=N] [JOBS=N] [BATCH=1|0] [KEEP=all|final]"
	@echo "         [TILE_SIZE=auto|PIX|none]"

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
#            [MPI=N] [MPIRUN=mpiexec] [JOBS=N] [BATCH=1|0] [KEEP=all|final] [TILE_SIZE=auto|PIX|none]
# INPUT is searched recursively (a MAST download as it comes); only NIRCam imaging enters the chain,
# each exposure from the earliest of its _uncal, _rate, _cal files present (a _rate or _cal is linked
# into the output tree under the chain's name and goes on from there):
# uncal -> rate -> 1f_rate -> 1f_cal -> 1f_wisp_cal -> 1f_wisp_bkg_cal -> <tree>/mosaics/<filter>/
# Which files, which output tree (LAYOUT) and every product name come from young.contract.makeplan,
# read once per run, writing nothing. Each step runs as one process per tree on all its files
# (BATCH=1, parallel inside with JOBS or MPI ranks; the tool redoes only what is missing or out of
# date), or one process per file (BATCH=0, make -j for parallelism). Per-exposure products are kept
# (.SECONDARY: a missing one is not remade while what follows it is up to date; KEEP=final deletes
# them once stage 3 of their tree has finished). Every recipe writes atomically (the tools through
# hidden temporaries, the others via .tmp/.part and mv), so a failed or killed one leaves no target
# and no .DELETE_ON_ERROR is needed: a batch that failed on one file keeps the others' products.
# `make -n` is a true dry run, and each step has its own target.
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
# stage 3 in tiles of this many pixels (young-stage3 --tile-size): auto tiles only a filter whose
# untiled run would not fit in memory; with MPI=N its tiles are farmed over the N ranks
TILE_SIZE ?= auto
# 1: one process per step and tree (files in parallel inside it, --jobs JOBS); 0: one per file and step
BATCH ?= 1
# all: keep every intermediate product; final: only the last cal of each exposure and the mosaics
KEEP ?= all
# worker processes inside each tool (--jobs; stage 3: filters at once after the reference, memory-capped)
JOBS ?= 1
YOUNG_BIN ?= $(BIN)
CHAIN_GOALS := all check-input refs stage1 fnoise stage2 wisp bkg stage3

STEPS_KNOWN := fnoise wisp bkg
CFG_OPT := $(if $(CONFIG),--config $(abspath $(CONFIG)),)
# make splits words at spaces: a path with one cannot be a target or prerequisite
$(foreach v,INPUT OUTPUT CONFIG,$(if $(word 2,$($(v))),$(error $(v) has a space in its path ('$($(v))'): \
  make cannot use it; link the folder to a path without spaces, or pipe the tools (see README))))
ifeq ($(filter $(BATCH),0 1),)
  $(error BATCH must be 1 (one process per step and tree) or 0 (one per file), not '$(BATCH)')
endif
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

ifeq ($(BATCH),0)
# ---- per file (BATCH=0): one process per file and step; make -j runs files in parallel
define STAGE1_RULE
$(call dst_of,$(1)): $(call src_of,$(1)) | $(PREFETCH)
	$(OFFLINE) $(YOUNG_BIN)/young-stage1 -q $(CFG_OPT) -o $(call tree_of,$(call dst_of,$(1))) $$< > /dev/null
endef
$(foreach e,$(Y_STAGE1),$(eval $(call STAGE1_RULE,$(e))))

# corrections and stage 2 act on files in the trees (pattern rules, shortest stem wins)
$(O)/%_1f_rate.fits: $(O)/%_rate.fits
	$(OFFLINE) $(YOUNG_BIN)/young-fnoise -q $(CFG_OPT) $< > /dev/null

$(O)/%_cal.fits: $(O)/%_rate.fits
	$(OFFLINE) $(YOUNG_BIN)/young-stage2 -q $(CFG_OPT) $< > /dev/null

# a short-wave file's wisp mask comes from its long-wave partner's cal file: that one first
# (nrca1-4 -> nrcalong, nrcb1-4 -> nrcblong; only the partner, so one new exposure remakes no other)
$(foreach e,$(Y_PARTNERS),$(eval $(call src_of,$(e)): | $(call dst_of,$(e))))

$(O)/%_wisp_cal.fits: $(O)/%_cal.fits
	$(OFFLINE) $(YOUNG_BIN)/young-wisp -q $(CFG_OPT) $< > /dev/null

$(O)/%_bkg_cal.fits: $(O)/%_cal.fits
	$(OFFLINE) $(YOUNG_BIN)/young-bkg -q $(CFG_OPT) $< > /dev/null
else
# ---- batches (default): one process per step and tree, parallel inside (--jobs JOBS, or MPI=N ranks
# for the stage tools); the targets of a batch are grouped (&:), so make runs it once when any of them
# is missing or older than its input, and the tool itself redoes only those (its per-file resume)
in_tree = $(filter $(1)/%,$(2))
STAGE_LAUNCH = $(if $(MPI),$(MPIRUN) -n $(MPI) ,)
STAGE_JOBS = $(if $(MPI),,--jobs $(JOBS))
# A batch: $(1) tree, $(2) step name, $(3) products, $(4) their inputs (same order), $(5) command,
# $(6) order-only prerequisites. One hidden stamp per tree and step, <tree>/.young-<step>.batch, runs the
# command on all the inputs when any input is newer than it (a new or remade exposure) or, before the
# tree's stage 3 has finished, when a product is missing; the tool redoes only the files whose product is
# missing, out of date or made with other settings. Each product depends on its own input (so a product
# is out of date exactly when that input is newer) and waits for the stamp; its empty recipe makes make
# read the product's time again after the batch.
FORCE_IF_MISSING = $(if $(wildcard $(1)/mosaics/young-stage3.list),,$(if $(filter-out $(wildcard $(2)),$(2)),FORCE))
define BATCH_RULE
$(1)/.young-$(2).batch: $(4) $(call FORCE_IF_MISSING,$(1),$(3)) | $(6)
	$(OFFLINE) $(strip $(5)) $(4) > /dev/null && touch $$@
endef
batch = $(if $(strip $(3)),$(eval $(call BATCH_RULE,$(1),$(2),$(3),$(4),$(5),$(6)))$(foreach \
  w,$(join $(addsuffix |,$(3)),$(4)),$(eval $(call src_of,$(w)): $(call dst_of,$(w)) | $(1)/.young-$(2).batch ;)))
$(foreach d,$(Y_DIRS),$(call batch,$(d),stage1,\
  $(foreach e,$(Y_STAGE1),$(call in_tree,$(d),$(call dst_of,$(e)))),\
  $(foreach e,$(Y_STAGE1),$(if $(call in_tree,$(d),$(call dst_of,$(e))),$(call src_of,$(e)))),\
  $(STAGE_LAUNCH)$(YOUNG_BIN)/young-stage1 -q $(CFG_OPT) $(STAGE_JOBS) -o $(d),$(PREFETCH)))
ifeq ($(filter fnoise,$(ALL_SKIP)),)
$(foreach d,$(Y_DIRS),$(call batch,$(d),fnoise,$(call in_tree,$(d),$(Y_FRATES)),\
  $(call in_tree,$(d),$(Y_RATES)),$(YOUNG_BIN)/young-fnoise -q $(CFG_OPT) --jobs $(JOBS)))
endif
$(foreach d,$(Y_DIRS),$(call batch,$(d),stage2,$(call in_tree,$(d),$(Y_S2OUT)),\
  $(call in_tree,$(d),$(Y_FRATES)),$(STAGE_LAUNCH)$(YOUNG_BIN)/young-stage2 -q $(CFG_OPT) $(STAGE_JOBS)))
ifeq ($(filter wisp,$(ALL_SKIP)),)
$(foreach d,$(Y_DIRS),$(call batch,$(d),wisp,$(call in_tree,$(d),$(Y_WCALS)),\
  $(call in_tree,$(d),$(Y_CALS)),$(YOUNG_BIN)/young-wisp -q $(CFG_OPT) --jobs $(JOBS)))
endif
ifeq ($(filter bkg,$(ALL_SKIP)),)
$(foreach d,$(Y_DIRS),$(call batch,$(d),bkg,$(call in_tree,$(d),$(Y_BCALS)),\
  $(call in_tree,$(d),$(Y_WCALS)),$(YOUNG_BIN)/young-bkg -q $(CFG_OPT) --jobs $(JOBS)))
endif
endif

.PHONY: FORCE
FORCE:

# stage 3: all filters of a tree at once (one grid, aligned to the longest wavelength);
# the list of products it printed is the target
define STAGE3_RULE
$(1)/mosaics/young-stage3.list: $(filter $(1)/%,$(Y_BCALS))
	@mkdir -p $$(@D)
	$(OFFLINE) $(if $(MPI),$(MPIRUN) -n $(MPI) ,)$(YOUNG_BIN)/young-stage3 -q $(CFG_OPT) $(if $(MPI),,--jobs $(JOBS)) \
	  --tile-size $(TILE_SIZE) -o $$(@D) $$^ > $$@.tmp && mv $$@.tmp $$@
	$(if $(filter final,$(KEEP)),rm -f $(filter $(1)/%,$(INTERMEDIATES)))
endef
$(foreach d,$(Y_DIRS),$(eval $(call STAGE3_RULE,$(d))))
