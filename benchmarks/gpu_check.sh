#!/usr/bin/env bash
# Every GPU check of the fast training step, in one command, on a machine with one CUDA GPU:
#   bash benchmarks/gpu_check.sh            # logs and a summary in ${OUT:-gpu_check}/
# 1. the GPU tests (graph vs eager, no host reads, first bad step);
# 2. the throughput table (benchmarks/train_throughput.py --device cuda);
# 3. a smoke of real training runs under launch/single.yaml: CUDA graph on and off, bf16, fp16
#    (falls back to eager steps), ZeRO-2 with one process, kill-free resume = straight run,
#    a non-finite run, evaluation during training.
# 4. packed sweeps: the GPU test of a pack as one CUDA graph, and benchmarks/sweep_throughput.py;
#    with FULL_SWEEP=1 also the whole 18-point sweep (30,000 steps each, packed: the 10-minute
#    target), timed, its report and evaluation JSONs copied to $OUT.
# Skip parts with SKIP="tests bench smoke pack" (any of them); BENCH_ARGS passes options to the benchmark.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
RUNS=$(mktemp -d)
STEPS=${STEPS:-300}
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
skip() { [[ " ${SKIP:-} " == *" $1 "* ]]; }

nvidia-smi -L | tee "$OUT/summary.txt"
python3 -c "import torch, accelerate; print('torch', torch.__version__, 'accelerate', accelerate.__version__)" | tee -a "$OUT/summary.txt"

if ! skip tests; then
    python3 -m pytest -q -p no:cacheprovider tests/test_step.py >"$OUT/tests.log" 2>&1
    rc=$?
    tail -n 3 "$OUT/tests.log" | tee -a "$OUT/summary.txt"
    [[ $rc == 0 ]] || { tail -n 60 "$OUT/tests.log"; exit 1; }  # the rest would only measure a broken step
fi

if ! skip bench; then
    python3 benchmarks/train_throughput.py --device cuda ${BENCH_ARGS:-} 2>&1 | grep -v "WARNING\|^$" | tee "$OUT/bench.log"
fi

train() {  # name, accelerate options..., then -- and config overrides
    local name=$1; shift
    local launch=()
    while [[ $1 != -- ]]; do launch+=("$1"); shift; done; shift
    local start=$SECONDS
    accelerate launch --config_file launch/single.yaml "${launch[@]}" -m betavae_dist.train \
        --config configs/dsprites_beta4.yaml run_dir="$RUNS/$name" train.steps="$STEPS" train.progress=false \
        train.log_every=50 train.ckpt_every=1000 "$@" >"$RUNS/$name.log" 2>&1
    local rc=$?
    echo "== $name (exit $rc, $((SECONDS - start)) s): $(grep -h "process(es) on\|CUDA graph off\|error" "$RUNS/$name.log" | tr '\n' ' ')" | tee -a "$OUT/smoke.log"
    tail -n 1 "$RUNS/$name/metrics.jsonl" 2>/dev/null | tee -a "$OUT/smoke.log"
}

if ! skip smoke; then
    : >"$OUT/smoke.log"
    train graph_fp32 -- train.cuda_graph=on eval.every="$STEPS" eval.n_train=1000 eval.n_eval=500
    train eager_fp32 -- train.cuda_graph=off
    train graph_bf16 --mixed_precision bf16 -- train.cuda_graph=auto
    train eager_bf16 --mixed_precision bf16 -- train.cuda_graph=off
    train fp16 --mixed_precision fp16 -- train.cuda_graph=auto
    train zero2_bf16 --config_file launch/zero2.yaml --num_processes 1 --mixed_precision bf16 --
    train graph_annealed -- loss.objective=annealed loss.capacity_steps=200
    train eager_annealed -- loss.objective=annealed loss.capacity_steps=200 train.cuda_graph=off
    train resumed -- train.steps=$((STEPS / 2))
    train resumed -- train.ckpt_every=$((STEPS / 2))
    train non_finite -- optim.lr=1e30
    python3 - "$RUNS" <<'EOF' 2>&1 | tee -a "$OUT/smoke.log"
import sys
from pathlib import Path
from safetensors.torch import load_file
runs = Path(sys.argv[1])
def diff(a, b):
    wa, wb = (load_file(runs / r / "export" / "model.safetensors") for r in (a, b))
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)
for a, b in [("graph_fp32", "eager_fp32"), ("graph_fp32", "resumed"), ("graph_bf16", "eager_bf16"),
             ("graph_annealed", "eager_annealed"), ("graph_fp32", "zero2_bf16")]:
    try:
        print(f"max |weights {a} - {b}| = {diff(a, b):.3g}")
    except Exception as e:
        print(f"{a} vs {b}: {e}")
EOF
    grep -h "eval/\|step $STEPS:" "$RUNS/graph_fp32.log" | tail -n 2 | tee -a "$OUT/smoke.log"
    tail -n 3 "$RUNS/non_finite.log" | tee -a "$OUT/smoke.log"
    ls "$RUNS/non_finite/checkpoints" 2>&1 | tee -a "$OUT/smoke.log"
fi
if ! skip pack; then
    python3 -m pytest -q -p no:cacheprovider tests/test_pack.py -k cuda >"$OUT/pack_tests.log" 2>&1
    tail -n 3 "$OUT/pack_tests.log" | tee -a "$OUT/summary.txt"
    python3 benchmarks/sweep_throughput.py --device cuda 2>&1 | grep -v "WARNING\|^$" | tee "$OUT/sweep_bench.log"
fi

if [[ -n "${FULL_SWEEP:-}" ]]; then
    start=$SECONDS
    python3 -m betavae_dist.sweep run configs/sweeps/dsprites_beta.yaml --pack 18 train.progress=false \
        >"$OUT/full_sweep.log" 2>&1
    echo "full sweep (exit $?): $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
    sweep=runs/sweep_dsprites_beta
    cp "$sweep"/report.md "$sweep"/report.csv "$sweep"/report.png "$OUT"/ 2>/dev/null
    for point in "$sweep"/*/; do cp "$point/evaluation.json" "$OUT/evaluation_$(basename "$point").json" 2>/dev/null; done
fi
rm -rf "$RUNS"
