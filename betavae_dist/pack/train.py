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

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .. import checkpoint, visualize
from ..config import ConfigError, flat
from ..data import build_dataset
from ..data.batches import DeviceBatches, NoiseWindow, StepBatches, device_pixels
from ..experiment import Config
from ..loop import Run, train_loop
from ..models import write_export
from ..objectives import OBJECTIVES
from ..optim import build_optimizer, parameter_groups
from ..plan import Plan, make_plan
from ..preflight import check_memory
from ..rundir import RunDir, TrainingError
from ..runtime import keep_heap
from ..solo import save_figures
from ..stepstats import StepStats
from ..stopping import StopSignal
from .model import PackedVAE
from .step import PackStep, freeze

MODEL_FILE, OPTIMIZER_FILE = "model.safetensors", "optimizer.bin"  # the names Accelerate's save_state uses
# What the points of one pack may differ in: these and the objective's settings (`loss.*` but
# `loss.objective` and the objective's shared_settings); anything else (shapes, optimiser, batch,
# objective) splits packs.
PER_POINT = ("run_dir", "seed")


def pack_key(cfg: Config) -> tuple:
    shared = {"loss.objective", *(f"loss.{name}" for name in OBJECTIVES[cfg.loss.objective].shared_settings)}
    return tuple((k, v) for k, v in flat(cfg.to_dict()).items()
                 if k not in PER_POINT and (not k.startswith("loss.") or k in shared))


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


class PackBatches:
    """Every point's micro-batches (its own seed's data order) and noise, stacked along dim 0.
    On a GPU the dataset is uploaded once and shared by the points."""

    def __init__(self, plan: Plan):
        dataset, device, batching = build_dataset(plan.cfg.data), plan.device, plan.batching
        if device.type == "cuda":
            pixels = device_pixels(dataset, device)
            self.points = [DeviceBatches(dataset, c.seed, batching, device, pixels) for c in plan.cfgs]
        else:
            self.points = [StepBatches(dataset, c.seed, batching) for c in plan.cfgs]
        self.windows = [NoiseWindow(c.seed, batching.batch_size, c.model.latents, device, c.train.steps, o.noise_width)
                        for c, o in zip(plan.cfgs, plan.objectives)]
        self.grad_accum = batching.grad_accum

    def images(self, step: int) -> list[torch.Tensor]:
        """Each micro-batch's images of every point: (K, b, C, H, W)."""
        return [torch.stack([p.images(step, micro) for p in self.points]) for micro in range(self.grad_accum)]

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


def resume_step(plan: Plan) -> int:
    """The newest step at which every point has a verified checkpoint (0: start afresh)."""
    if plan.cfg.train.resume == "none":
        return 0
    steps = [{step for step, path in checkpoint.checkpoints(d.checkpoints) if checkpoint.verifies(path)}
             for d in plan.dirs]
    common = set.intersection(*steps)
    if not common and any(steps):
        print("pack: no step has a verified checkpoint of every point; the pack starts at step 0")
    return max(common, default=0)


def load_pack(model: PackedVAE, optimizer: torch.optim.Optimizer, dirs: list[RunDir], step: int) -> None:
    states = []
    for k, files in enumerate(dirs):
        ckpt = checkpoint.step_dir(files.checkpoints, step)
        try:
            model.set_point(k, load_file(ckpt / MODEL_FILE))
            states.append(torch.load(ckpt / OPTIMIZER_FILE, weights_only=True))
        except (OSError, RuntimeError, KeyError, ValueError) as e:
            raise checkpoint.CheckpointError(f"cannot load checkpoint {ckpt}: {str(e).splitlines()[0]}") from None
    optimizer.load_state_dict(stacked_optimizer_state(states))


def save_pack(model: PackedVAE, optimizer: torch.optim.Optimizer, plan: Plan, alive: list[bool], step: int) -> None:
    """A checkpoint of every live point at `step`; old ones are pruned only after all are written."""
    live = [(k, files) for k, files in enumerate(plan.dirs) if alive[k]]
    for k, files in live:
        def write(directory: Path, k=k) -> None:
            save_file(model.point_state(k), str(directory / MODEL_FILE))
            torch.save(point_optimizer_state(optimizer, k), directory / OPTIMIZER_FILE)

        checkpoint.write(files.checkpoints, step, write)
    for _, files in live:
        checkpoint.prune(files.checkpoints, plan.cfg.train.keep_checkpoints)


class PackRun(Run):
    """The K points of one pack in this process: the stacked model, its optimiser and step."""

    def __init__(self, plan: Plan):
        self.plan, cfg = plan, plan.cfg
        self.model = PackedVAE(plan.cfgs, self.device)
        groups = parameter_groups(self.model.params.items(), plan.objectives[0].critic_group())  # a pack shares them
        self.optimizer = build_optimizer(groups, cfg.optim)
        self.start = resume_step(plan)
        if self.start > cfg.train.steps:
            raise TrainingError(f"the pack's checkpoints are at step {self.start}, past train.steps={cfg.train.steps}")
        if self.start:
            load_pack(self.model, self.optimizer, plan.dirs, self.start)
        self.batches = PackBatches(plan)
        self.stats = StepStats(self.device, self.model.terms, points=self.model.size)
        self.run_step = PackStep(self.model, self.optimizer, plan, self.stats)
        self.description = self.run_step.description
        self.probe = self.model.images(8)  # each point's first images: checked at saves, drawn at the end
        self.probe.copy_(torch.stack([p.images(0, 0)[:8] for p in self.batches.points]))
        self.kl_probe = [p.images(0, 0)[:64] for p in self.batches.points]  # each latent's KL, at log steps

    def step(self, step: int) -> list[dict]:
        schedules = [objective.schedule(step) for objective in self.plan.objectives]
        self.run_step.run(step, self.batches.images(step), self.batches.noise(step),
                          {name: [s[name] for s in schedules] for name in schedules[0]})
        return schedules

    def read(self, stop: bool) -> tuple[list[dict], bool]:
        points = self.stats.read(self.model.finite_points(), stop, 0, ranks=1)
        for k, point in enumerate(points):  # each point's latents, on the images its solo run reads for them
            point["extra"] = visualize.latent_stats(self.model.point_model(k), self.kl_probe[k])
        return points, stop

    @torch.no_grad()
    def sound(self) -> list[bool]:
        noise = torch.zeros(*self.probe.shape[:2], self.plan.objectives[0].noise_width, device=self.device)
        return torch.isfinite(self.model.loss_terms(self.probe, noise, self.run_step.schedule)[:, 0]).tolist()

    def fail(self, k: int, problem: str, done: int) -> None:
        last = self.plan.dirs[k].record_failure(problem, done)
        print(f"point {self.plan.dirs[k]} failed: {problem}; frozen, the others go on. Last good checkpoint: "
              f"{last or 'none yet'}")
        freeze(self.model, self.optimizer, self.stats, k, done)

    def save(self, done: int, alive: list[bool]) -> None:
        save_pack(self.model, self.optimizer, self.plan, alive, done)

    def finish(self, alive: list[bool]) -> None:
        for k, (c, files) in enumerate(zip(self.plan.cfgs, self.plan.dirs)):
            if alive[k]:
                write_export(self.model.point_state(k), c, files.export)
                save_figures(self.model.point_model(k), self.probe[k], c, files)
        failed = alive.count(False)
        print(f"pack done: {sum(alive)} of {self.model.size} points trained" + (f", {failed} failed" if failed else ""))


def train_pack(cfgs: list[Config], device: torch.device | None = None) -> list[Config]:
    """Train the points `cfgs` (one pack, see split_packs) to the end; returns the points that failed."""
    check_packable(cfgs)
    keep_heap()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    plan = make_plan(cfgs, device)
    cfg = plan.cfg
    check_memory(cfg, len(cfgs) * plan.batching.micro)
    for c, files in zip(cfgs, plan.dirs):
        files.refuse_another_run(c)
        files.prepare(0)
    run = PackRun(plan)
    for c, files in zip(cfgs, plan.dirs):
        files.save_config(c)
    threads = f" ({torch.get_num_threads()} CPU thread(s))" if device.type == "cpu" else ""
    print(f"pack of {len(cfgs)} on {device}{threads}, {run.description}, batch {cfg.train.batch_size} each, "
          + (f"resuming at step {run.start}" if run.start else "starting at step 0"))
    with StopSignal() as stop:
        alive = train_loop(run, run.start, stop)
    run.finish(alive)
    return [c for c, ok in zip(cfgs, alive) if not ok]
