#!/usr/bin/env bash
# YOUNG on one node with make (one process per step, N workers inside each), in the YOUNG Apptainer image (README.md, "On a cluster").
#
#   sbatch examples/slurm-make.sh RAW_DIR OUT_DIR        RAW_DIR: a MAST download (searched recursively)
#
# `make all` runs every step as one process over all exposures, with as many workers inside it as
# the node's cores and memory allow (~2.5 GB each: a full-frame stage-1 worker peaks near 2 GB),
# then stage 3 once per product folder. Products: OUT_DIR/*_rate.fits ... *_cal.fits and
# OUT_DIR/mosaics/<filter>/. Submitting again resumes: make redoes only what is out of date.
#
# Before, once, on a login node (it has network): fill the CRDS cache for these exposures
#   apptainer exec --bind "$HOME/crds_cache:/crds" \
#       --env CRDS_SERVER_URL=https://jwst-crds.stsci.edu,CRDS_READONLY_CACHE=0 \
#       young.sif young-refs RAW_DIR > /dev/null
# The job itself needs no network: the cache is bound read-only, CRDS runs serverless.
#
# Settings (environment variables, all optional):
#   YOUNG_IMAGE=young.sif               the image (relative to the submit folder)
#   YOUNG_CRDS_CACHE=$HOME/crds_cache   the filled CRDS cache (bound read-only at /crds)
#   YOUNG_CONFIG=                       a young.yaml (make all CONFIG=; its folder is bound too)
#   YOUNG_SKIP=                         corrections to leave out, e.g. "wisp bkg" (make all SKIP=)
#   YOUNG_MEM_PER_JOB_MB=2500           memory per make job; jobs = min(cores, memory / this)
#   YOUNG_JOBS=                         the workers per step (make all JOBS=N), overriding that computation
#   YOUNG_APPTAINER_ARGS=               more apptainer options, e.g. "--bind /project"
#SBATCH --job-name=young-make
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=32
#SBATCH --mem=96G
#SBATCH --time=08:00:00
#SBATCH --output=young-make-%j.log
set -euo pipefail

die() { echo "young: $*" >&2; exit 2; }

(($# == 2)) || die "usage: sbatch examples/slurm-make.sh RAW_DIR OUT_DIR"
[[ -d $1 ]] || die "$1: not a folder"
mkdir -p -- "$2"
RAW=$(readlink -f -- "$1")
OUT=$(readlink -f -- "$2")
IMAGE=$(readlink -f -- "${YOUNG_IMAGE:-young.sif}")
CRDS_CACHE=$(readlink -f -- "${YOUNG_CRDS_CACHE:-$HOME/crds_cache}")
CONFIG=${YOUNG_CONFIG:+$(readlink -f -- "$YOUNG_CONFIG")}
read -r -a EXTRA <<<"${YOUNG_APPTAINER_ARGS:-}"

[[ -f $IMAGE ]] || die "$IMAGE: no image (build it, see README.md, or set YOUNG_IMAGE)"
[[ -d $CRDS_CACHE/mappings/jwst ]] \
    || die "$CRDS_CACHE: no CRDS cache; fill it on a login node first (see the top of this script)"
[[ -z $CONFIG || -f $CONFIG ]] || die "$CONFIG: no such config file"

# memory-capped parallelism: as many jobs as cores, but no more than the memory holds
cpus=${SLURM_CPUS_PER_TASK:-$(nproc)}
if [[ -n ${SLURM_MEM_PER_NODE:-} ]]; then
    mem_mb=$SLURM_MEM_PER_NODE
elif [[ -n ${SLURM_MEM_PER_CPU:-} ]]; then
    mem_mb=$((SLURM_MEM_PER_CPU * cpus))
else
    mem_mb=$(($(awk '/^MemAvailable:/ {print $2}' /proc/meminfo) / 1024))
fi
jobs=$((mem_mb / ${YOUNG_MEM_PER_JOB_MB:-2500}))
((jobs <= cpus)) || jobs=$cpus
((jobs >= 1)) || jobs=1
jobs=${YOUNG_JOBS:-$jobs}

BINDS=(--bind "$CRDS_CACHE:/crds:ro" --bind "$RAW" --bind "$OUT")
VARS=(INPUT="$RAW" OUTPUT="$OUT")
if [[ -n $CONFIG ]]; then
    BINDS+=(--bind "$(dirname -- "$CONFIG")")
    VARS+=(CONFIG="$CONFIG")
fi
[[ -z ${YOUNG_SKIP:-} ]] || VARS+=(SKIP="$YOUNG_SKIP")

echo "young: make all JOBS=$jobs ($cpus cores, $mem_mb MB) on $(hostname)" >&2
# compute without a CRDS server: the image's defaults (cache at /crds, serverless, read-only),
# given explicitly so that no APPTAINERENV_CRDS_* of the user's can switch them off
exec apptainer run "${BINDS[@]}" \
    --env "CRDS_PATH=/crds,CRDS_SERVER_URL=https://jwst-serverless-mode.stsci.edu,CRDS_READONLY_CACHE=1,OMP_NUM_THREADS=1" \
    "${EXTRA[@]}" "$IMAGE" make all JOBS="$jobs" "${VARS[@]}"
