#!/bin/bash
# A β sweep as a job array: each array task trains, evaluates and exports one point of the sweep
# file into its own run directory, then refreshes the sweep report.
#
#   sbatch slurm/sweep.sh                                   # configs/sweeps/dsprites_beta.yaml, 18 points
#   SWEEP=my_sweep.yaml sbatch --array=0-$(($(python -m betavae_dist.sweep count my_sweep.yaml) - 1)) slurm/sweep.sh
#   PACK=18 sbatch --array=0 slurm/sweep.sh                 # all 18 points in one process (one GPU)
#   PACK=6 sbatch --array=0-2 slurm/sweep.sh                # three tasks of 6 points
#
# Settings: SWEEP (sweep file), PACK (points per task, trained together in one process by
# `python -m betavae_dist.sweep run --pack`; default: the sweep file's `pack`, else 1; array task
# i runs points i*PACK .. i*PACK+PACK-1; `sweep count SWEEP --pack K` gives the number of tasks),
# plus those of train.sh (PROCS_PER_NODE, MIXED_PRECISION, LAUNCH_CONFIG, PYTHON_ENV). A task of
# one point may span several nodes (sbatch --nodes=N). A point that already has its evaluation is
# not redone; a preempted task is requeued and resumes.
#SBATCH --job-name=betavae-sweep
#SBATCH --array=0-17
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --output=slurm-%A_%a.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
set -uo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
source slurm/common.sh
SWEEP=${SWEEP:-configs/sweeps/dsprites_beta.yaml}
PACK=${PACK:-$(python -m betavae_dist.sweep count "$SWEEP" --pack-size)} || exit 2

if (( PACK > 1 )); then  # one process trains, evaluates and reports its pack
    run_once python -m betavae_dist.sweep run "$SWEEP" --pack "$PACK" --index "${SLURM_ARRAY_TASK_ID:-0}"
    status=$?
    requeue_if_preempted
    exit "$status"
fi

point=$(python -m betavae_dist.sweep point "$SWEEP" "${SLURM_ARRAY_TASK_ID:-0}" --shell) || exit 2
eval "$point"  # sets RUN_DIR, TRAIN_ARGS and EVAL_ARGS
echo "sweep point ${SLURM_ARRAY_TASK_ID:-0}: $RUN_DIR"

if [[ -f "$RUN_DIR/evaluation.json" ]]; then
    echo "already trained and evaluated: $RUN_DIR"
else
    run_on_nodes -m betavae_dist.train "${TRAIN_ARGS[@]}"
    status=$?
    requeue_if_preempted
    (( status == 0 )) || exit "$status"
    run_on_nodes -m betavae_dist.evaluate --model "$RUN_DIR/export" --out "$RUN_DIR/evaluation.json" "${EVAL_ARGS[@]}"
    status=$?
    requeue_if_preempted
    (( status == 0 )) || exit "$status"
fi
python -m betavae_dist.sweep report "$(dirname "$RUN_DIR")"
