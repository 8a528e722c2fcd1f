#!/usr/bin/env bash
# YOUNG on a Slurm cluster, across nodes, in the YOUNG Apptainer image (README.md, "On a cluster").
#
#   sbatch examples/slurm.sh RAW_DIR OUT_DIR        RAW_DIR: a folder of *_uncal.fits
#
# Stage 1, the 1/f, wisp and background corrections and stage 2 run as MPI task farms
# (srun --mpi=pmi2 apptainer exec young.sif young-...): every rank takes one exposure at a time
# from a shared queue, one core and ~2.5 GB each (--mem-per-cpu); a file that fails, or whose
# worker is killed for memory, is named and the others go on. Then stage 3 runs once, on one node,
# with that node's cores and memory. Products: OUT_DIR/*_rate.fits ... *_cal.fits,
# OUT_DIR/mosaics/<filter>/; the file lists passed between the steps: OUT_DIR/lists/.
# Submitting again resumes: up-to-date products are skipped.
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
#   YOUNG_CONFIG=                       a young.yaml for every tool (its folder is bound too)
#   YOUNG_SKIP=                         corrections to leave out, e.g. "wisp bkg"
#   YOUNG_SRUN_MPI=pmi2                 srun --mpi plugin (pmix where the site has no pmi2)
#   YOUNG_STAGE3_CPUS=                  cores (hence memory) for stage 3; default: one node's tasks
#   YOUNG_TILE_SIZE=                    stage 3 in tiles of this many pixels over ALL the job's ranks
#       (young-stage3 --tile-size, each rank --mem-per-cpu of memory; README.md, "Stage 3 in tiles");
#       default: one process on one node, tiled only where a filter does not fit there (auto)
#   YOUNG_APPTAINER_ARGS=               more apptainer options (split at blanks), e.g. a host's
#       Cray MPICH instead of the image's MPICH (README.md, "On a cluster"; with YOUNG_SRUN_MPI=cray_shasta):
#       "--bind /opt/cray,/var/spool/slurmd --env MPI4PY_LIBMPI=$CRAY_MPICH_DIR/lib-abi-mpich/libmpi.so.12"
#SBATCH --job-name=young
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=16
#SBATCH --cpus-per-task=1
#SBATCH --mem-per-cpu=2500M
#SBATCH --time=04:00:00
#SBATCH --output=young-%j.log
set -euo pipefail

die() { echo "young: $*" >&2; exit 2; }

(($# == 2)) || die "usage: sbatch examples/slurm.sh RAW_DIR OUT_DIR"
[[ -d $1 ]] || die "$1: not a folder"
mkdir -p -- "$2"
RAW=$(readlink -f -- "$1")
OUT=$(readlink -f -- "$2")
IMAGE=$(readlink -f -- "${YOUNG_IMAGE:-young.sif}")
CRDS_CACHE=$(readlink -f -- "${YOUNG_CRDS_CACHE:-$HOME/crds_cache}")
CONFIG=${YOUNG_CONFIG:+$(readlink -f -- "$YOUNG_CONFIG")}
SKIP=" ${YOUNG_SKIP:-} "
SRUN_MPI=${YOUNG_SRUN_MPI:-pmi2}
STAGE3_CPUS=${YOUNG_STAGE3_CPUS:-${SLURM_NTASKS_PER_NODE:-${SLURM_CPUS_ON_NODE:-1}}}
STAGE3_CPUS=${STAGE3_CPUS%%(*}   # SLURM_NTASKS_PER_NODE may read "16(x2)"
read -r -a EXTRA <<<"${YOUNG_APPTAINER_ARGS:-}"

[[ -f $IMAGE ]] || die "$IMAGE: no image (build it, see README.md, or set YOUNG_IMAGE)"
[[ -d $CRDS_CACHE/mappings/jwst ]] \
    || die "$CRDS_CACHE: no CRDS cache; fill it on a login node first (see the top of this script)"
[[ -z $CONFIG || -f $CONFIG ]] || die "$CONFIG: no such config file"

BINDS=(--bind "$CRDS_CACHE:/crds:ro" --bind "$RAW" --bind "$OUT")
CFG=()
if [[ -n $CONFIG ]]; then
    BINDS+=(--bind "$(dirname -- "$CONFIG")")
    CFG=(--config "$CONFIG")
fi
# Compute without a CRDS server: the image's defaults (cache at /crds, serverless, read-only),
# given explicitly so that no APPTAINERENV_CRDS_* of the user's can switch them off.
CRDS_ENV="CRDS_PATH=/crds,CRDS_SERVER_URL=https://jwst-serverless-mode.stsci.edu,CRDS_READONLY_CACHE=1"

# on every rank of the job, one core each; stdin (the file list) goes to rank 0, which hands the
# files out
# shellcheck disable=SC2329  # called through step()
on_all_ranks() {
    srun --mpi="$SRUN_MPI" --input=0 --kill-on-bad-exit=0 \
        apptainer exec "${BINDS[@]}" --env "$CRDS_ENV,OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}" \
        "${EXTRA[@]}" "$IMAGE" "$@"
}
# one process on one node, with STAGE3_CPUS cores and their memory
on_one_node() {
    srun --mpi=none --nodes=1 --ntasks=1 --cpus-per-task="$STAGE3_CPUS" --input=0 \
        apptainer exec "${BINDS[@]}" --env "$CRDS_ENV,OMP_NUM_THREADS=$STAGE3_CPUS" \
        "${EXTRA[@]}" "$IMAGE" "$@"
}

FAILED=0
# step NAME IN_LIST OUT_LIST LAUNCHER TOOL ARGS...: the tool reads IN_LIST, lists its products in
# OUT_LIST. Exit 1 (some inputs failed, each named on stderr) goes on with the others' products.
step() {
    local name=$1 in=$2 out=$3 status=0
    shift 3
    echo "young: $name: $(wc -l <"$in") input(s)" >&2
    "$@" <"$in" >"$out" || status=$?
    if ((status != 0)); then
        FAILED=1
        [[ -s $out ]] || { echo "young: $name: exit status $status and no products; stopping" >&2; exit "$status"; }
        echo "young: $name: exit status $status; going on with its $(wc -l <"$out") product(s)" >&2
    fi
}
# correction NAME IN_LIST OUT_LIST: a per-exposure correction, or its input passed through if skipped
correction() {
    if [[ $SKIP == *" $1 "* ]]; then
        echo "young: $1: skipped" >&2
        cp -- "$2" "$3"
    else
        step "$1" "$2" "$3" on_all_ranks "young-$1" "${CFG[@]}"
    fi
}

L=$OUT/lists
mkdir -p "$L"
find "$RAW" -maxdepth 1 -name '*_uncal.fits' | sort >"$L/uncal.txt"
[[ -s $L/uncal.txt ]] || die "$RAW: no *_uncal.fits files"

# 0. does the read-only cache hold every reference? (seconds; names what is missing)
on_one_node young-refs -q "${CFG[@]}" <"$L/uncal.txt" >"$L/refs.txt" \
    || die "the CRDS cache $CRDS_CACHE lacks references (named above): run young-refs on a login node"

step stage1 "$L/uncal.txt" "$L/rate.txt" on_all_ranks young-stage1 "${CFG[@]}" --output-dir "$OUT"
correction fnoise "$L/rate.txt" "$L/fnoise.txt"
step stage2 "$L/fnoise.txt" "$L/cal.txt" on_all_ranks young-stage2 "${CFG[@]}"
correction wisp "$L/cal.txt" "$L/wisp.txt"
correction bkg "$L/wisp.txt" "$L/bkg.txt"
if [[ -n ${YOUNG_TILE_SIZE:-} ]]; then
    step stage3 "$L/bkg.txt" "$L/mosaics.txt" on_all_ranks young-stage3 "${CFG[@]}" --output-dir "$OUT/mosaics" \
        --tile-size "$YOUNG_TILE_SIZE" --max-memory "${SLURM_MEM_PER_CPU:-2500}M"
else
    step stage3 "$L/bkg.txt" "$L/mosaics.txt" on_one_node young-stage3 "${CFG[@]}" --output-dir "$OUT/mosaics"
fi

echo "young: done: $(wc -l <"$L/mosaics.txt") stage-3 product(s) under $OUT/mosaics" >&2
if ((FAILED)); then
    echo "young: some inputs failed (named above); submit again after fixing them to resume" >&2
fi
exit "$FAILED"
