# Sourced by train.sh and sweep.sh: one `accelerate launch` per node, and preemption handling.
#
# run_on_nodes ARGS... runs `accelerate launch <flags> ARGS...` once per node of the allocation
# (through betavae_dist.launch: a bad training config is one line and exit 2 before any rank starts);
# run_once CMD... runs one process (a pack of sweep points).
# Each node reads its own rank from $SLURM_NODEID (expanded on that node, not here); the first
# node's address (SLURM's NodeAddr) and MAIN_PORT make the rendezvous. Processes per node: the GPUs
# SLURM gave ($SLURM_GPUS_ON_NODE), else $PROCS_PER_NODE (default 1, CPU). It returns the exit
# status of the step, 3 after a preemption signal (the trainer then wrote a checkpoint), or 143
# after a cancel (TERM); so does run_once. The trainers exit 0, not 3, after a stop checkpoint here
# (BETAVAE_PREEMPTED_EXIT_CODE): this script learns of the stop from the signal itself, and srun
# would log any other status as an error.

if [[ -n "${PYTHON_ENV:-}" ]]; then source "$PYTHON_ENV/bin/activate"
elif [[ -f .venv/bin/activate ]]; then source .venv/bin/activate; fi

HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
HEAD_ADDR=$(scontrol show node "$HEAD_NODE" -o | sed -n 's/.*NodeAddr=\([^ ]*\).*/\1/p')
export HEAD_ADDR
export MAIN_PORT=${MASTER_PORT:-$((20000 + ${SLURM_ARRAY_TASK_ID:-0} * 97 % 10000 + SLURM_JOB_ID % 9000))}
export NNODES=${SLURM_JOB_NUM_NODES:-1}
export PPN=${SLURM_GPUS_ON_NODE:-${PROCS_PER_NODE:-1}}
export PREEMPTED="" CANCELLED="" BETAVAE_PREEMPTED_EXIT_CODE=0
JOB_ID="${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}${SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}"
echo "job ${SLURM_JOB_ID} (restart ${SLURM_RESTART_COUNT:-0}): $NNODES node(s) x $PPN process(es), head $HEAD_NODE ($HEAD_ADDR:$MAIN_PORT)"

run_on_nodes() {
    # USR1 is ignored by the launcher processes (the disposition survives exec) and handled by the
    # trainers, which replace it with their own handler: they write a checkpoint and exit.
    srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c '
        trap "" USR1
        flags=(--num_machines "$NNODES" --machine_rank "$SLURM_NODEID" --num_processes $((NNODES * PPN))
               --main_process_ip "$HEAD_ADDR" --main_process_port "$MAIN_PORT"
               --mixed_precision "${MIXED_PRECISION:-no}" --dynamo_backend no)  # given: no warning of defaults
        if [[ -n "${LAUNCH_CONFIG:-}" ]]; then flags=(--config_file "$LAUNCH_CONFIG" "${flags[@]}")
        elif (( NNODES * PPN > 1 )); then flags=(--multi_gpu --rdzv_backend static "${flags[@]}"); fi
        exec python -m betavae_dist.launch "${flags[@]}" "$@"' bash "$@" &
    wait_relaying_signals $!
}

run_once() {
    # One process on the first node (a pack of sweep points): `run_once python -m ...`.
    srun --nodes=1 --ntasks=1 "$@" &
    wait_relaying_signals $!
}

wait_relaying_signals() {
    local pid=$1 status=0
    # SLURM sends USR1 to this shell before the time limit or a preemption (--signal=B:USR1@...);
    # relay it to every process of the job's steps: they checkpoint, and the job is requeued.
    # TERM is `scancel` (or the end of the time limit's grace): the trainers got it too and write
    # a checkpoint if they can; the job then ends, without requeue.
    trap 'PREEMPTED=1; echo "signal received: asking the trainers to checkpoint"; scancel --signal=USR1 "$JOB_ID"' USR1
    trap 'CANCELLED=1; echo "cancelled: the trainers checkpoint if they can; no requeue"' TERM
    wait "$pid" || status=$?
    while kill -0 "$pid" 2>/dev/null; do wait "$pid" || status=$?; done
    trap - USR1 TERM
    if [[ -n "$PREEMPTED" ]]; then return 3; fi
    if [[ -n "$CANCELLED" ]]; then return 143; fi
    return "$status"
}

requeue_if_preempted() {
    if [[ -n "$PREEMPTED" ]]; then
        echo "requeueing job ${SLURM_JOB_ID}; it resumes from its newest checkpoint"
        scontrol requeue "$JOB_ID"
        exit 0
    fi
}
