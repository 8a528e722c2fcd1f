# YOUNG image: the pinned toolchain of `make install` (constraints.txt), MPICH + mpi4py from the
# pinned wheels, the young-* tools on PATH, make and this repository's Makefile.
#
#   docker build -t young:0.2.0 .
#   docker run --rm young:0.2.0 selftest
#   docker run --rm -v "$PWD:/data" -v "$HOME/crds_cache:/crds:ro" young:0.2.0 make all INPUT=raw
#   apptainer build young.sif docker-daemon:young:0.2.0
#
# apptainer.def builds the same image without Docker; tests/test_containers.py keeps the two in
# step (same base, same install step, same labels and environment). README.md ("On a cluster"): how to use it.

# Python 3.11 (pyproject: requires-python >= 3.11) on Debian 12; the pinned wheels need glibc >= 2.28
FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="YOUNG" \
      org.opencontainers.image.description="JWST NIRCam imaging toolchain around the STScI jwst pipeline: uncal ramps to aligned mosaics and catalogs" \
      org.opencontainers.image.version="0.2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm" \
      young.version="0.2.0" \
      young.jwst.version="3.0.0" \
      young.crds.context="jwst_1581.pmap"

# make runs the install step and `make all`; nothing else comes from apt (MPI is the mpich wheel)
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*

# the repository copy the image runs from (the files `make install` needs, the entrypoint, examples)
WORKDIR /opt/young
COPY Makefile pyproject.toml constraints.txt README.md ./
COPY shared/ shared/
COPY tools/ tools/
COPY container/ container/
COPY examples/ examples/

# THE install step, the same one CI runs (make test -> make install): a venv with the pinned
# dependencies and a plain (non-editable) install of YOUNG
RUN PIP_NO_CACHE_DIR=1 make install VENV=/opt/young/.venv EDITABLE= \
 && rm -rf build shared/*.egg-info \
 && mkdir -p /crds /data

# Tools on PATH. CRDS: a cache bound at /crds, filled beforehand where there is network
# (young-refs), read here without a server (serverless, read-only) with the context jwst 3.0.0 was
# released with. Override with -e (docker) / --env (apptainer), e.g. to fill the cache:
# CRDS_SERVER_URL=https://jwst-crds.stsci.edu CRDS_READONLY_CACHE=0
ENV PATH="/opt/young/.venv/bin:$PATH" \
    YOUNG_HOME="/opt/young" \
    CRDS_PATH="/crds" \
    CRDS_SERVER_URL="https://jwst-serverless-mode.stsci.edu" \
    CRDS_READONLY_CACHE="1" \
    CRDS_CONTEXT="jwst_1581.pmap" \
    CRDS_OBSERVATORY="jwst"

# the same self-check as apptainer.def's %test (docker build --build-arg YOUNG_SELFTEST=0 skips it)
ARG YOUNG_SELFTEST=1
RUN if [ "$YOUNG_SELFTEST" = 1 ]; then /opt/young/container/young-entrypoint selftest; fi

WORKDIR /data
# young-* tool, make, selftest, or any program on PATH; no arguments: help
ENTRYPOINT ["/opt/young/container/young-entrypoint"]
CMD []
