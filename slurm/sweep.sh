#!/bin/bash
# A β sweep as a job array: each array task trains, evaluates and exports one point of the sweep
# file into its own run directory, then refreshes the sweep report.
#
#   sbatch slurm/sweep.sh                                   # configs/sweeps/dsprites_beta.yaml, 18 points
#   SWEEP=my_sweep.yaml sbatch --array=0-$(($(python -m betavae_dist.sweep count my_sweep.yaml) - 1)) slurm/sweep.sh
#
# Settings: SWEEP (sweep file), plus those of train.sh (PROCS_PER_NODE, MIXED_PRECISION,
# LAUNCH_CONFIG, PYTHON_ENV). A task may span several nodes (sbatch --nodes=N). A point that
# already has its evaluation is not redone; a preempted task is requeued and resumes.
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
