"""What the tests share: launching the real entry points as separate processes, reference
representations for the metric tests, and fixtures' data (conftest.py holds the fixtures)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
CPU_DDP = ROOT / "launch" / "cpu_ddp.yaml"
# How long a test waits for a process or job before calling it hung: a backstop, not a timing. Waits
# end on events (a file written, a process or job gone); a loaded 2-core machine ran the suite ~3x
# slower than an idle one, so anything shorter could fail a healthy run.
HUNG = 1800
# A small, fast schedule; tests add their own overrides after these.
TINY = ["train.batch_size=16", "train.log_every=2", "train.progress=false"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_cmd(nproc: int, *args: str, launcher: str = "accelerate.commands.launch") -> list[str]:
    """`accelerate launch` (or `launcher`: betavae_dist.launch) with our CPU DDP config for nproc > 1,
    else one plain process."""
    if nproc == 1:
        return [sys.executable, *args]
    return [sys.executable, "-m", launcher, "--config_file", str(CPU_DDP), "--num_processes", str(nproc),
            "--main_process_port", str(free_port()), *args]


def run(cmd: list[str], timeout: float = HUNG, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """`env`: variables to set on top of ours; None removes one."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DS_ACCELERATOR": "cpu", **(env or {})}
    env = {k: v for k, v in env.items() if v is not None}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def train(run_dir: Path, *overrides: str, nproc: int = 1, check: bool = True, config: str = "configs/dsprites_beta4.yaml"):
    cmd = accelerate_cmd(nproc, "-m", "betavae_dist.train", "--config", config,
                         f"run_dir={run_dir}", *TINY, *overrides)
    return run(cmd, check=check)


def in_process(main, argv: list[str]) -> subprocess.CompletedProcess:
    """An entry point's `main(argv)` called in this process, with its exit code and output as
    `run` gives them for a launched one (the default tier's stand-in for a process start)."""
    import contextlib
    import io
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def train_here(run_dir: Path, *overrides: str, check: bool = True, config: str = "configs/dsprites_beta4.yaml"):
    """`train` in this process: the trainer's `main`, as `python -m betavae_dist.train` runs it."""
    from betavae_dist.train import main
    proc = in_process(main, ["--config", str(ROOT / config), f"run_dir={run_dir}", *TINY, *overrides])
    if check and proc.returncode != 0:
        raise AssertionError(f"train exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def weights(export_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(export_dir / "model.safetensors")


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


# Reference representations for the metric tests: the true factors (normalised), a random
# rotation that mixes them, and a constant.
SMALL_EVAL = dict(seed=0, pairs=32, n_train=2000, n_eval=1000, n_samples=2000)


def oracle(factors):
    import numpy as np
    from betavae_dist.data.dsprites import FACTOR_SIZES
    return (factors / np.maximum(np.array(FACTOR_SIZES) - 1, 1)).astype(np.float32)


def rotated(factors):
    import numpy as np
    q = np.linalg.qr(np.random.default_rng(1).standard_normal((6, 6)))[0]
    return (oracle(factors) @ q).astype(np.float32)


def constant(factors):
    import numpy as np
    return np.zeros((len(factors), 6), np.float32)


# disentanglement_lib's values were computed on these (the metrics issue's table): dSprites' five
# varying factors, colour left out; the noise is new at every call.
def dlib_oracle(factors):
    import numpy as np
    return factors[:, 1:] / (np.array([3, 6, 40, 32, 32]) - 1)


def dlib_rotated(factors):
    import numpy as np
    return dlib_oracle(factors) @ np.linalg.qr(np.random.RandomState(0).randn(5, 5))[0]


def dlib_noisy():
    import numpy as np
    state = np.random.RandomState(1)
    return lambda factors: dlib_oracle(factors) + state.normal(0, 0.05, (len(factors), 5))


def dlib_constant(factors):
    import numpy as np
    return np.zeros((len(factors), 5))


def metric(name, dsprites, represent, factor_set_name="all", **settings) -> dict:
    """One metric's results through `run_metric`, with `EvalConfig` defaults (disentanglement_lib's
    sizes) unless `settings` say otherwise."""
    from betavae_dist.metrics import run_metric
    from betavae_dist.metrics.codes import CodeTable, factor_set
    table = CodeTable(represent, dsprites.factor_sizes)
    return run_metric(name, dsprites, table, factor_set(dsprites, factor_set_name), eval_config(**settings))


def eval_config(**settings):
    """EvalConfig with these `eval.*` settings; one without a metric's name (`n_train=...`) sets it
    for every metric that has it, as on the command line."""
    from betavae_dist.config_files import mapping_items
    from betavae_dist.experiment import from_items
    return from_items(mapping_items({"eval": settings}, "in the test")).eval


def score(name, dsprites, represent, key, factor_set_name="all", **settings) -> float:
    """One score at the small sizes of SMALL_EVAL."""
    return metric(name, dsprites, represent, factor_set_name, **{**SMALL_EVAL, **settings})[key]


def make_celeba(root, n_train=28, n_valid=4, n_test=4):
    """A CelebA-layout fixture: small random JPEGs (178x218 like the aligned set) and the real
    header formats of list_attr_celeba.txt and list_eval_partition.txt."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    (root / "img_align_celeba").mkdir(parents=True)
    names = ["5_o_Clock_Shadow", "Arched_Eyebrows"] + [f"Attr_{i}" for i in range(38)]
    n = n_train + n_valid + n_test
    rows, parts = [], []
    for i in range(1, n + 1):
        file = f"{i:06d}.jpg"
        Image.fromarray(rng.integers(0, 255, (218, 178, 3), dtype=np.uint8)).save(root / "img_align_celeba" / file)
        rows.append(file + " " + " ".join(f"{v:2d}" for v in rng.choice([-1, 1], 40)))
        parts.append(f"{file} {0 if i <= n_train else 1 if i <= n_train + n_valid else 2}")
    (root / "list_attr_celeba.txt").write_text(f"{n}\n" + " ".join(names) + " \n" + "\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    return root


def plain_webdataset(directory: Path, shards: int = 3, per_shard: int = 6) -> Path:
    """A set written by plain webdataset, as someone else's pipeline would: .png and .json members,
    64x64 RGB, no manifest."""
    import numpy as np
    import webdataset as wds
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with wds.ShardWriter(str(directory / "celeba-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for i in range(shards * per_shard):
            sink.write({"__key__": f"img{i:04d}", "png": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
                        "json": {"index": i}})
    return directory


def write_sweep(path: Path, out_dir: Path, grid: dict, train: list[str], eval: list[str], pack: int | None = None) -> Path:
    """A sweep file over configs/dsprites_beta4.yaml (see betavae_dist/sweep.py)."""
    data = {"base": "configs/dsprites_beta4.yaml", "out_dir": str(out_dir), "grid": grid, "train": list(train),
            "eval": list(eval), **({"pack": pack} if pack else {})}
    path.write_text(yaml.safe_dump(data))
    return path


def adam_drift_bound(steps: int, lr: float, beta1: float = 0.9, beta2: float = 0.999) -> float:
    """How far apart two Adam runs from the same weights can end, element by element, whatever their
    gradients: Adam's step m̂/√v̂ is at most B_t in size (Cauchy-Schwarz over the moving averages),
    so each step can part them by 2·lr·B_t. Rounding differences of ~1e-7 in a near-zero gradient can
    flip its sign, which is why runs equal in exact arithmetic may use up this bound."""
    import math
    total = 0.0
    for t in range(1, steps + 1):
        ratio = sum((1 - beta1) ** 2 * beta1 ** (2 * (t - i)) / ((1 - beta2) * beta2 ** (t - i)) for i in range(1, t + 1))
        total += 2 * lr * math.sqrt(ratio) * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
    return total


def shard_stream(cfg, world: int = 1, rank: int = 0):
    """Rank `rank`'s stream of `world` ranks over cfg's shards, as a training run builds it."""
    from betavae_dist.data.batches import Batching
    from betavae_dist.data.stream import ShardStream

    return ShardStream(cfg.data, cfg.seed, cfg.model.channels, Batching.of(cfg.train, world, rank))
