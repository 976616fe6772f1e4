"""Train the points of one pack together; each point's run directory is that of a solo run.

Each point has its own config.yaml, metrics.jsonl (the same lines as a solo run's), checkpoints
(`RUN/checkpoints/step_N` with model.safetensors and optimizer.bin as Accelerate writes them,
atomic and verified by their manifest), export and figures. The data order and noise of a point
come from its own seed, as in its solo run, so its weights match the solo run's to float
rounding. All points checkpoint at the same steps; old checkpoints are removed only once every
point has its new one, so a kill at any moment leaves a step that every point can resume from.
A point that fails (non-finite loss, gradient or weights) gets `RUN/failed.json`, keeps its last
good checkpoint, and is left out of later packs; the others go on.
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .. import checkpoint
from ..config import ConfigError, flat, save_yaml
from ..experiment import Config
from ..data import build_dataset
from ..data.batches import DeviceBatches, NoiseWindow, StepBatches, device_pixels, micro_batch_size
from ..export import write_export
from ..objectives import build_objective
from ..optim import CAPTURABLE, build_optimizer
from ..runtime import keep_heap
from ..step import non_finite
from ..train import (PREEMPTED_EXIT_CODE, Preempted, StopSignal, TrainingError, check_memory, open_metrics_log,
                     prepare_run_dir, progress_bar, refuse_another_run, save_figures)
from .model import PackedVAE
from .step import PackStats, PackStep, freeze

FAILED = "failed.json"
MODEL_FILE, OPTIMIZER_FILE = "model.safetensors", "optimizer.bin"  # the names Accelerate's save_state uses
# What the points of one pack may differ in: these and the objective's settings (`loss.*` but
# `loss.objective`); anything else (shapes, optimiser, batch, objective) splits packs.
PER_POINT = ("run_dir", "seed")


def pack_key(cfg: Config) -> tuple:
    return tuple((k, v) for k, v in flat(cfg.to_dict()).items()
                 if k not in PER_POINT and (not k.startswith("loss.") or k == "loss.objective"))


def split_packs(cfgs: list[Config]) -> list[list[Config]]:
    """The points grouped into packs that can train together, in order of first appearance."""
    packs: dict[tuple, list[Config]] = {}
    for cfg in cfgs:
        packs.setdefault(pack_key(cfg), []).append(cfg)
    return list(packs.values())


def check_packable(cfgs: list[Config]) -> None:
    cfg = cfgs[0]
    if any(pack_key(c) != pack_key(cfg) for c in cfgs):
        raise ConfigError("these points differ in more than seed, run_dir and loss settings: split_packs first")
    if len({c.run_dir for c in cfgs}) != len(cfgs):
        raise ConfigError("two points of a pack share a run_dir")
    unsupported = {
        "data.source": (cfg.data.source != "dataset", "packs train on a factor dataset (data.source=dataset)"),
        "eval.every": (cfg.eval.every != 0, "packed points are evaluated at the end, together: eval.every=0"),
        "train.report_to": (bool(cfg.train.report_to), "packs log to metrics.jsonl only"),
        "train.resume": (cfg.train.resume not in ("auto", "force", "none"), "packs resume with auto, force or none"),
    }
    for key, (bad, why) in unsupported.items():
        if bad:
            raise ConfigError(f"{key}: {why}")


def failed_record(run_dir: Path) -> dict | None:
    path = Path(run_dir) / FAILED
    return json.loads(path.read_text()) if path.is_file() else None


class PackBatches:
    """Every point's micro-batches (its own seed's data order) and noise, stacked along dim 0.
    On a GPU the dataset is uploaded once and shared by the points."""

    def __init__(self, cfgs: list[Config], device: torch.device):
        dataset = build_dataset(cfgs[0])
        if device.type == "cuda":
            pixels = device_pixels(dataset, device)
            self.points = [DeviceBatches(dataset, c, 1, 0, device, pixels) for c in cfgs]
        else:
            self.points = [StepBatches(dataset, c, 1, 0) for c in cfgs]
        self.windows = [NoiseWindow(c, device, c.train.steps) for c in cfgs]

    def images(self, step: int):
        return lambda micro: torch.stack([p.images(step, micro) for p in self.points])

    def noise(self, step: int) -> torch.Tensor:
        return torch.stack([window(step) for window in self.windows])


def point_optimizer_state(optimizer: torch.optim.Optimizer, k: int) -> dict:
    """Point k's share of the stacked optimiser's state dict: the state dict of its solo optimiser."""
    state = optimizer.state_dict()
    rows = {i: {name: (v[k] if v.dim() > 0 else v).cpu().clone() if torch.is_tensor(v) else v for name, v in entry.items()}
            for i, entry in state["state"].items()}
    return {"state": rows, "param_groups": state["param_groups"]}


def stacked_optimizer_state(states: list[dict]) -> dict:
    first = states[0]
    rows = {i: {name: torch.stack([s["state"][i][name] for s in states]) if torch.is_tensor(v) and v.dim() > 0 else v
                for name, v in entry.items()} for i, entry in first["state"].items()}
    return {"state": rows, "param_groups": first["param_groups"]}


def resume_step(cfgs: list[Config]) -> int:
    """The newest step at which every point has a verified checkpoint (0: start afresh)."""
    if cfgs[0].train.resume == "none":
        return 0
    steps = []
    for cfg in cfgs:
        ckpt_dir = Path(cfg.run_dir) / "checkpoints"
        steps.append({step for step, path in checkpoint.checkpoints(ckpt_dir) if checkpoint.verifies(path)})
    common = set.intersection(*steps)
    if not common and any(steps):
        print("pack: no step has a verified checkpoint of every point; the pack starts at step 0")
    return max(common, default=0)


def load_pack(model: PackedVAE, optimizer: torch.optim.Optimizer, cfgs: list[Config], step: int) -> None:
    states = []
    for k, cfg in enumerate(cfgs):
        ckpt = Path(cfg.run_dir) / "checkpoints" / f"step_{step}"
        try:
            model.set_point(k, load_file(ckpt / MODEL_FILE))
            states.append(torch.load(ckpt / OPTIMIZER_FILE, weights_only=True))
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            raise checkpoint.CheckpointError(f"cannot load checkpoint {ckpt}: {str(e).splitlines()[0]}") from None
    optimizer.load_state_dict(stacked_optimizer_state(states))


def save_pack(model: PackedVAE, optimizer: torch.optim.Optimizer, cfgs: list[Config], alive: list[bool], step: int) -> None:
    """A checkpoint of every live point at `step`; old ones are pruned only after all are written."""
    live = [(k, cfg) for k, cfg in enumerate(cfgs) if alive[k]]
    for k, cfg in live:
        def write(directory: Path, k=k) -> None:
            save_file(model.point_state(k), str(directory / MODEL_FILE))
            torch.save(point_optimizer_state(optimizer, k), directory / OPTIMIZER_FILE)

        checkpoint.write(Path(cfg.run_dir) / "checkpoints", step, write)
    for _, cfg in live:
        checkpoint.prune(Path(cfg.run_dir) / "checkpoints", cfg.train.keep_checkpoints)


def train_pack(cfgs: list[Config], device: torch.device | None = None) -> list[Config]:
    """Train the points `cfgs` (one pack, see split_packs) to the end; returns the points that failed."""
    check_packable(cfgs)
    keep_heap()
    cfg = cfgs[0]
    check_memory(cfg, len(cfgs) * micro_batch_size(cfg, 1))
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for c in cfgs:
        refuse_another_run(c, Path(c.run_dir), Path(c.run_dir) / "checkpoints")
        prepare_run_dir(Path(c.run_dir), 0)
        checkpoint.refuse_intruders(Path(c.run_dir) / "checkpoints")
    model = PackedVAE(cfgs, device)
    optimizer = build_optimizer(model.params.values(), cfg)
    start = resume_step(cfgs)
    if start > cfg.train.steps:
        raise TrainingError(f"the pack's checkpoints are at step {start}, past train.steps={cfg.train.steps}")
    if start:
        load_pack(model, optimizer, cfgs, start)
    for c in cfgs:
        save_yaml(c, Path(c.run_dir) / "config.yaml")
    objectives = [build_objective(c) for c in cfgs]
    batches = PackBatches(cfgs, device)
    stats = PackStats(model.size, model.terms, device)
    use_graph = device.type == "cuda" and cfg.train.cuda_graph != "off" and cfg.optim.name in CAPTURABLE
    run_step = PackStep(model, optimizer, cfg, stats, use_graph)
    probe = model.images(8)  # each point's first images: checked at saves, drawn at the end
    probe.copy_(torch.stack([p.images(0, 0)[:8] for p in batches.points]))
    print(f"pack of {model.size} on {device}, {run_step.description}, batch {cfg.train.batch_size} each, "
          + (f"resuming at step {start}" if start else "starting at step 0"))

    alive, failed = [True] * model.size, []
    with StopSignal() as stop, ExitStack() as files, progress_bar(cfg.train.progress) as progress:
        logs = [files.enter_context(open_metrics_log(Path(c.run_dir) / "metrics.jsonl", start)) for c in cfgs]
        task = progress.add_task("step", total=cfg.train.steps, completed=start, stats="")
        window_start, window_steps = time.perf_counter(), 0
        for step in range(start, cfg.train.steps):
            schedules = [objective.schedule(step) for objective in objectives]
            run_step(step, batches.images(step), batches.noise(step), {name: [s[name] for s in schedules]
                                                                        for name in schedules[0]})
            done, window_steps = step + 1, window_steps + 1
            last = done == cfg.train.steps
            log_now, save_now = done % cfg.train.log_every == 0 or last, done % cfg.train.ckpt_every == 0 or last
            if not (log_now or save_now or stop.received):
                continue
            points = stats.read(model)
            sound = sound_points(model, probe, run_step.schedule) if save_now or stop.received else [True] * model.size
            for k, point in enumerate(points):
                problem = alive[k] and (non_finite(point, done) or (
                    not sound[k] and f"the weights after step {done} give a non-finite loss (they diverged)"))
                if problem:
                    alive[k] = False
                    failed.append(cfgs[k])
                    _fail(cfgs[k], problem, done)
                    freeze(model, optimizer, stats, k, done)
            if not any(alive):
                raise TrainingError("every point of the pack failed (see the lines above)")
            if log_now:
                elapsed = time.perf_counter() - window_start
                for k, point in enumerate(points):
                    if alive[k]:
                        line = {name: point[name] for name in stats.terms}
                        line.update(img_per_s=window_steps * cfg.train.batch_size / elapsed,
                                    lr=optimizer.param_groups[0]["lr"], **schedules[k])
                        logs[k].write(json.dumps({"step": done, **line}) + "\n")
                        logs[k].flush()
                rate = sum(alive) * window_steps * cfg.train.batch_size / elapsed
                progress.update(task, completed=done, stats=f"{sum(alive)}/{model.size} points  {rate:.0f} img/s in all")
                stats.reset()
                window_start, window_steps = time.perf_counter(), 0
            if save_now or stop.received:
                save_pack(model, optimizer, cfgs, alive, done)
            if stop.received:
                raise Preempted(f"stop signal: checkpoints at step {done} written; exit {PREEMPTED_EXIT_CODE}: "
                                "the same command resumes from them")

    for k, c in enumerate(cfgs):
        if alive[k]:
            write_export(model.point_state(k), c, Path(c.run_dir) / "export")
            save_figures(model.point_model(k), probe[k], c)
    print(f"pack done: {sum(alive)} of {model.size} points trained" + (f", {len(failed)} failed" if failed else ""))
    return failed


@torch.no_grad()
def sound_points(model: PackedVAE, probe: torch.Tensor, schedule: dict[str, torch.Tensor]) -> list[bool]:
    """Whether each point's weights still give a finite loss on its probe images, as the solo
    trainer checks before a save (train.check_sound): finite weights can have diverged."""
    noise = torch.zeros(model.size, probe.shape[1], model.latents, device=model.device)
    return torch.isfinite(model.loss_terms(probe, noise, schedule)[:, 0]).tolist()


def _fail(cfg: Config, problem: str, done: int) -> None:
    last = checkpoint.latest(Path(cfg.run_dir) / "checkpoints")
    (Path(cfg.run_dir) / FAILED).write_text(json.dumps({"step": done, "problem": problem,
                                                        "last_good_checkpoint": str(last) if last else None}))
    print(f"point {cfg.run_dir} failed: {problem}; frozen, the others go on. Last good checkpoint: {last or 'none yet'}")
