#!/bin/bash
# One training run over N nodes: one srun task per node, each running `accelerate launch`.
#
#   sbatch [--nodes=N] [--gpus-per-node=G] slurm/train.sh
#
# Settings (environment variables; sbatch passes your environment):
#   CONFIG           experiment config (default configs/dsprites_beta4.yaml)
#   OVERRIDES        key=value overrides, space-separated, e.g. "loss.beta=8 run_dir=runs/b8"
#   PROCS_PER_NODE   processes per node when SLURM gives no GPUs (default 1: CPU)
#   MIXED_PRECISION  no | bf16 | fp16 (default no)
#   LAUNCH_CONFIG    an accelerate config file, e.g. launch/zero2.yaml (default: plain DDP)
#   MASTER_PORT      rendezvous port on the first node (default derived from the job id)
#   PYTHON_ENV       virtualenv to activate (default ./.venv if present)
# Preemption / time limit: SLURM signals this script 120 s before; the trainer writes a checkpoint,
# the job is requeued and resumes from it (train.resume=auto).
#SBATCH --job-name=betavae-train
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --output=slurm-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
#SBATCH --signal=B:USR1@120
set -uo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
source slurm/common.sh

# shellcheck disable=SC2086  # OVERRIDES is a space-separated list on purpose
run_on_nodes -m betavae_dist.train --config "${CONFIG:-configs/dsprites_beta4.yaml}" ${OVERRIDES:-}
status=$?
requeue_if_preempted
exit "$status"
