#!/usr/bin/env bash
# Every GPU check of the fast training step, in one command, on a machine with one CUDA GPU:
#   bash benchmarks/gpu_check.sh            # logs and a summary in ${OUT:-gpu_check}/
# 1. the GPU tests (graph vs eager, no host reads, first bad step);
# 2. the throughput table (benchmarks/train_throughput.py --device cuda);
# 3. a smoke of real training runs under launch/single.yaml: CUDA graph on and off, bf16, fp16
#    (falls back to eager steps), ZeRO-2 with one process, kill-free resume = straight run,
#    a non-finite run, evaluation during training.
# 4. packed sweeps: the GPU test of a pack as one CUDA graph, and benchmarks/sweep_throughput.py.
# 5. With FULL_SWEEP=1, before everything else: the whole 18-point sweep packed (30,000 steps each:
#    the 10-minute target), stopped by SIGTERM after SWEEP_SECONDS (default 540; the pack then
#    checkpoints and exits), its training rate, steps reached and projected time in summary.txt,
#    and the sweep directory without checkpoints (report, evaluation JSONs, logs) in sweep.tar.gz.
#    SWEEP_ARGS adds settings (e.g. train.steps=10000); SWEEP_FILE names another sweep file.
# Skip parts with SKIP="tests bench smoke pack" (any of them); BENCH_ARGS passes options to the
# training benchmark, PACK_BENCH_ARGS to the sweep benchmark (e.g. --repeats 1).
# Packages the GPU image lacks (deepspeed, webdataset, pyspng, numba + llvmlite for DCI) are installed from .whl/ if it is
# there (the device README's wheels: carry [".whl"]). $OUT gets at most 8 files, as the device returns.
# On a 15-minute lease (start-up included): two calls, the second at once on the warm machine:
#   FULL_SWEEP=1 SKIP="tests bench smoke pack" bash benchmarks/gpu_check.sh     # timeout_s 600
#   SKIP="tests bench smoke" PACK_BENCH_ARGS="--repeats 1" bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check}
mkdir -p "$OUT"
if [[ -d .whl ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl &&
        export PYTHONPATH=/tmp/site
fi
RUNS=$(mktemp -d)
STEPS=${STEPS:-300}
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
skip() { [[ " ${SKIP:-} " == *" $1 "* ]]; }

nvidia-smi -L | tee "$OUT/summary.txt"
python3 -c "import torch, accelerate; print('torch', torch.__version__, 'accelerate', accelerate.__version__)" | tee -a "$OUT/summary.txt"

if [[ -n "${FULL_SWEEP:-}" ]]; then
    sweep_file=${SWEEP_FILE:-configs/sweeps/dsprites_beta.yaml}
    start=$SECONDS
    timeout -s TERM -k 60 "${SWEEP_SECONDS:-540}" python3 -m betavae_dist.sweep run "$sweep_file" --pack 18 \
        train.progress=false ${SWEEP_ARGS:-} >"$RUNS/full_sweep.log" 2>&1
    echo "full sweep: $sweep_file --pack 18 ${SWEEP_ARGS:-} (exit $?): $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
    python3 - "$sweep_file" "$RUNS/full_sweep.log" "$OUT/sweep.tar.gz" ${SWEEP_ARGS:-} <<'EOF' 2>&1 | tee -a "$OUT/summary.txt"
import json, statistics, sys, tarfile
from betavae_dist.experiment import from_sources
from betavae_dist.sweep_file import Sweep
sweep, steps, rates = Sweep.load(sys.argv[1]), {}, []
with tarfile.open(sys.argv[3], "w:gz") as tar:  # one file back: the log and the sweep without checkpoints and exports
    tar.add(sys.argv[2], "full_sweep.log")
    if sweep.out_dir.is_dir():
        tar.add(sweep.out_dir, sweep.out_dir.name,
                filter=lambda info: None if info.name.endswith(("/checkpoints", "/export")) else info)
for point in sweep.points:
    log = sweep.run_dir(point) / "metrics.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines() if '"img_per_s"' in line] if log.is_file() else []
    steps[sweep.name(point)] = lines[-1]["step"] if lines else 0
    rates += [line["img_per_s"] for line in lines]  # one point's rate; the pack's points run together
cfg = from_sources(sweep.base or None, sweep.train_overrides(sweep.points[0]) + sys.argv[4:])  # SWEEP_ARGS, as it ran
print(f"steps reached per point: {min(steps.values())}..{max(steps.values())} of {cfg.train.steps}")
if rates:
    rate = statistics.median(rates) * len(sweep.points)
    images = len(sweep.points) * cfg.train.steps * cfg.train.batch_size
    print(f"training: median {rate:,.0f} img/s for the {len(sweep.points)} points together: {cfg.train.steps} steps each "
          f"take {images / rate / 60:.1f} minutes (the target: the whole sweep in <= 10 minutes, >= 70,000 img/s)")
print(f"evaluated: {sum((sweep.run_dir(p) / 'evaluation.json').is_file() for p in sweep.points)} of {len(sweep.points)} points")
EOF
fi

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
    train graph_factor_vae -- loss.objective=factor_vae
    train eager_factor_vae -- loss.objective=factor_vae train.cuda_graph=off
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
             ("graph_annealed", "eager_annealed"), ("graph_factor_vae", "eager_factor_vae"), ("graph_fp32", "zero2_bf16")]:
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
    python3 benchmarks/sweep_throughput.py --device cuda ${PACK_BENCH_ARGS:-} 2>&1 | grep -v "WARNING\|^$" | tee "$OUT/sweep_bench.log"
fi

rm -rf "$RUNS"
