"""One optimiser step, run eagerly or replayed as one CUDA graph; its statistics stay on the device.

An ordinary step never makes the host wait for the GPU: the loss terms and the gradient norm are
summed on the device, and the first step with a non-finite loss or gradient is recorded there.
`StepStats.read` is the one host read (and the one all-reduce); the trainer calls it at log,
checkpoint and evaluation steps only, which are the same steps on every rank.

`GraphStep` captures the whole step once (forward, loss, backward, gradient norm and clipping, the
optimiser, the statistics) and replays it: one launch instead of hundreds of Python-dispatched
kernels, which is what a small model at batch 64 is bound by on a GPU. Before each replay the
step's images, noise, step number and the objective's schedule values (e.g. the annealed
capacity) are copied into the graph's input buffers on the device. Capture needs warm-up steps;
the weights and optimiser state are restored after them, so warm-up does not change the run.
`EagerStep` is the same step through Accelerate: CPUs, DDP, DeepSpeed and fp16 loss scaling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import math

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch.nn.utils import clip_grad_norm_, get_total_norm

from .distributed import unwrap
from .data.batches import micro_batch_size, micro_slice
from .objectives import Objective
from .optim import CAPTURABLE

if TYPE_CHECKING:
    from .experiment import Config

NO_STEP = 2**62  # "no bad step yet"; exact in float64
WARMUP_STEPS = 3


class StepStats:
    """Sums of the objective's terms and the gradient norm since the last reset, and the first step
    whose loss or gradient norm was not finite, all on the device; updated in place, so a graph can
    own them. A row per point: one for a solo run, K for a pack (pack/step.py)."""

    def __init__(self, device: torch.device, terms: tuple[str, ...], points: int = 1):
        self.terms = (*terms, "grad_norm")
        self.sums = torch.zeros(points, len(self.terms), dtype=torch.float64, device=device)
        self.first_bad = torch.full((points, 2), NO_STEP, dtype=torch.int64, device=device)  # loss, gradient
        self.steps = 0

    @property
    def alive(self) -> torch.Tensor:
        """(points,): no bad step recorded yet."""
        return (self.first_bad == NO_STEP).all(1)

    def add(self, losses: torch.Tensor, grad_norm: torch.Tensor, step: int | torch.Tensor, check_grad: bool) -> None:
        """`losses`: the step's objective terms, averaged over micro-batches ((points,) terms; a
        solo step's (terms,) is its one row)."""
        self.sums += torch.cat([losses, grad_norm[..., None]], -1).double()
        finite = torch.stack([losses.isfinite().all(-1), grad_norm.isfinite() | (not check_grad)], -1)
        self.first_bad.copy_(torch.where(finite, self.first_bad, self.first_bad.clamp(max=step)))

    def reset(self) -> None:
        self.sums.zero_()
        self.steps = 0

    def clear(self) -> None:
        """Forget everything, bad steps included (after a graph's warm-up)."""
        self.reset()
        self.first_bad.fill_(NO_STEP)

    def read(self, weights_finite: torch.Tensor, stop: bool, skipped: int, ranks: int) -> list[dict]:
        """Each point's means over the steps since the last reset and over the ranks, its first bad
        steps and whether its weights are finite (`weights_finite`, (points,)); and in every point's
        row, whether any rank wants to stop and the samples all ranks skipped. The one host read
        (and, with several ranks, the one all-reduce): every rank must call it at the same step."""
        points, width = self.sums.shape
        flags = torch.stack([torch.tensor(float(stop)), torch.tensor(float(skipped))]).to(self.sums.device)
        summed = torch.cat([self.sums.flatten(), (~weights_finite).double().flatten(), flags])
        first_bad = self.first_bad.flatten().clone()
        if ranks > 1:
            torch.distributed.all_reduce(summed)
            torch.distributed.all_reduce(first_bad, op=torch.distributed.ReduceOp.MIN)
        values = torch.cat([summed, first_bad.double()]).tolist()  # the one host read
        values, bad = values[:len(summed)], values[len(summed):]
        count = max(self.steps, 1) * ranks
        stop_votes, skipped_all = values[-2:]
        rows = []
        for k in range(points):
            row = {name: values[k * width + i] / count for i, name in enumerate(self.terms)}
            row.update(stop=stop_votes > 0, data_skipped=round(skipped_all), weights_finite=values[points * width + k] == 0,
                       **bad_steps(*bad[2 * k:2 * k + 2]))
            rows.append(row)
        return rows


def finite_weights(model: torch.nn.Module) -> torch.Tensor:
    """(1,): whether every weight of a (solo) model is finite, on its device."""
    return torch.stack([p.isfinite().all() for p in model.parameters()]).all().reshape(1)


def bad_steps(bad_loss: float, bad_grad: float) -> dict:
    """The first bad steps as read back from the device: None where there was none."""
    return {"bad_loss_step": None if bad_loss >= NO_STEP else int(bad_loss),
            "bad_grad_step": None if bad_grad >= NO_STEP else int(bad_grad)}


def non_finite(stats: dict, done: int) -> str | None:
    """What went non-finite first in statistics `read` after step `done` (loss, gradient norm or
    weights), or None. Steps are counted from 1, as checkpoints are: step s is the s-th, run from
    the weights after step s - 1 (the device records its 0-based index)."""
    bad = [(step, what) for step, what in ((stats["bad_loss_step"], "loss"), (stats["bad_grad_step"], "gradient norm"))
           if step is not None]
    if bad:
        index, what = min(bad)
        return f"non-finite {what} at step {index + 1}"
    return None if stats["weights_finite"] else f"non-finite weights after step {done}"


def loss_terms(model, x: torch.Tensor, noise: torch.Tensor, objective: Objective,
               schedule: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """What to differentiate and the detached terms of one micro-batch, in `objective.terms` order;
    `noise`: the reparameterisation noise and the regulariser's own columns (Objective.noise_width)."""
    noise, schedule = objective.split_noise(noise, schedule)
    output, mean, logvar, z = model(x, noise)
    terms = objective(output, x, mean, logvar, z, schedule)
    return objective.minimised(terms), torch.stack([terms[name] for name in objective.terms]).detach()


def set_capturable(optimizer: torch.optim.Optimizer, capturable: bool) -> None:
    """Adam's step counters on the device (a graph can update them) or on the host (eager Adam reads
    them there). Loading a checkpoint restores whatever the run that wrote it used."""
    for group in optimizer.param_groups:
        if "capturable" not in group or group["capturable"] == capturable:
            continue
        group["capturable"] = capturable
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            if "step" in state:
                state["step"] = state["step"].to(p.device if capturable else "cpu", torch.float32)


class EagerStep:
    """The step as ordinary calls through Accelerate; what does not change during a run is looked up once."""

    description = "eager steps"

    def __init__(self, model, optimizer, accelerator: Accelerator, cfg: Config, objective: Objective, stats: StepStats):
        self.model, self.optimizer, self.accelerator, self.cfg = model, optimizer, accelerator, cfg
        self.objective, self.stats = objective, stats
        self.memory_format = unwrap(accelerator, model).memory_format
        self.deepspeed = accelerator.distributed_type == DistributedType.DEEPSPEED
        self.check_grad = accelerator.scaler is None  # fp16 loss scaling expects the odd overflow and skips that step
        world, rank = accelerator.num_processes, accelerator.process_index
        micro = micro_batch_size(cfg, world)
        self.rows = [micro_slice(m, world, rank, micro) for m in range(cfg.train.grad_accum)]
        if not self.deepspeed:
            set_capturable(optimizer.optimizer, False)

    def _grad_norm(self) -> torch.Tensor | None:
        clip = self.cfg.optim.grad_clip
        if self.deepspeed or clip > 0:
            norm = self.accelerator.clip_grad_norm_(self.model.parameters(), clip if clip > 0 else math.inf)
            return None if norm is None else torch.as_tensor(norm, dtype=torch.float32, device=self.accelerator.device)
        self.accelerator.unscale_gradients()  # fp16: the norm of the true gradients
        return get_total_norm([p.grad for p in self.model.parameters() if p.grad is not None])

    def __call__(self, step: int, micro_batches, noise: torch.Tensor, schedule: dict[str, float]) -> int:
        """One optimiser step; `schedule`: the objective's values at this step. Returns the data
        source's count of skipped samples."""
        losses, skipped, grad_norm = 0, 0, None
        for rows in self.rows:
            images, skipped = next(micro_batches)
            x = images.to(self.accelerator.device, memory_format=self.memory_format)
            with self.accelerator.accumulate(self.model):
                loss, terms = loss_terms(self.model, x, noise[rows], self.objective, schedule)
                self.accelerator.backward(loss)
                if self.accelerator.sync_gradients:
                    grad_norm = self._grad_norm()
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            losses = losses + terms
        if grad_norm is None:  # DeepSpeed keeps its norm to itself
            grad_norm = torch.full((), math.nan, device=self.accelerator.device)
        self.stats.add(losses / len(self.rows), grad_norm, step, self.check_grad and not self.deepspeed)
        self.stats.steps += 1
        return skipped


class GraphStep:
    """The whole step captured as one CUDA graph and replayed (one process on one GPU)."""

    description = "one CUDA graph per step"

    def __init__(self, model, optimizer, accelerator: Accelerator, cfg: Config, objective: Objective, stats: StepStats):
        self.model, self.optimizer, self.cfg = model, optimizer.optimizer, cfg
        self.objective, self.stats = objective, stats
        device, memory_format = accelerator.device, unwrap(accelerator, model).memory_format
        micro, channels = micro_batch_size(cfg, 1), cfg.model.channels
        self.rows = [micro_slice(m, 1, 0, micro) for m in range(cfg.train.grad_accum)]
        # The graph's inputs: filled before each replay, never reallocated.
        self.x = [torch.zeros(micro, channels, 64, 64, device=device).contiguous(memory_format=memory_format)
                  for _ in self.rows]
        self.noise = [torch.randn(micro, objective.noise_width, device=device) for _ in self.rows]
        self.step = torch.zeros((), dtype=torch.int64, device=device)
        self.schedule = {name: torch.zeros((), dtype=torch.float32, device=device) for name in objective.schedule(0)}
        self.graph = capture(self._body, self.optimizer, list(model.parameters()), stats.clear)

    def _body(self) -> None:
        losses = 0
        for x, noise in zip(self.x, self.noise):
            loss, terms = loss_terms(self.model, x, noise, self.objective, self.schedule)
            (loss / len(self.rows)).backward()  # what accelerator.backward does with accumulation
            losses = losses + terms
        params, clip = list(self.model.parameters()), self.cfg.optim.grad_clip
        if clip > 0:
            grad_norm = clip_grad_norm_(params, clip, foreach=True)
        else:
            grad_norm = get_total_norm([p.grad for p in params], foreach=True)
        self.stats.add(losses / len(self.rows), grad_norm, self.step, check_grad=True)
        self.optimizer.step()

    def __call__(self, step: int, micro_batches, noise: torch.Tensor, schedule: dict[str, float]) -> int:
        skipped = 0
        for x, noise_buffer, rows in zip(self.x, self.noise, self.rows):
            images, skipped = next(micro_batches)
            x.copy_(images)
            noise_buffer.copy_(noise[rows])
        self.step.fill_(step)
        for name, value in schedule.items():
            self.schedule[name].fill_(value)
        self.graph.replay()
        self.stats.steps += 1
        return skipped


def capture(body, optimizer: torch.optim.Optimizer, params: list[torch.Tensor], clear_stats) -> torch.cuda.CUDAGraph:
    """`body` (a whole optimiser step) captured as one CUDA graph after warm-up steps; the parameters
    and the optimiser's state are then put back as they were, and `clear_stats()` forgets what the
    warm-up counted, so warm-up does not change the run. On failure everything is put back for
    eager steps and the error raised."""
    set_capturable(optimizer, True)
    saved_params = [p.detach().clone() for p in params]
    saved_state = {p: {k: v.clone() if torch.is_tensor(v) else v for k, v in optimizer.state[p].items()}
                   for p in params if p in optimizer.state}
    try:
        side = torch.cuda.Stream()  # warm-up off the default stream, as capture requires
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                optimizer.zero_grad(set_to_none=True)
                body()
        torch.cuda.current_stream().wait_stream(side)
        optimizer.zero_grad(set_to_none=True)  # backward in the graph allocates the gradients
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            body()
    except Exception:  # back to the state before the warm-up, for eager steps
        with torch.no_grad():
            for p, saved in zip(params, saved_params):
                p.copy_(saved)
                p.grad = None
        optimizer.state.clear()
        optimizer.state.update(saved_state)
        set_capturable(optimizer, False)
        raise
    _undo_warmup(optimizer, params, saved_params, saved_state)
    clear_stats()
    return graph


@torch.no_grad()
def _undo_warmup(optimizer, params, saved_params, saved_state) -> None:
    """The graph owns the parameters and the optimiser's state tensors: overwrite them in place.
    State that did not exist before the warm-up becomes zeros, what Adam and SGD start from."""
    for p, saved in zip(params, saved_params):
        p.copy_(saved)
        for k, v in optimizer.state[p].items():
            if torch.is_tensor(v):
                v.copy_(saved_state[p][k]) if p in saved_state else v.zero_()


def graph_unsupported(accelerator: Accelerator, cfg: Config) -> str | None:
    """Why this run cannot be captured as a CUDA graph, or None."""
    if accelerator.device.type != "cuda":
        return "not on a GPU"
    if accelerator.distributed_type != DistributedType.NO:
        return f"{accelerator.distributed_type.value} runs eager (capture is supported for one process on one GPU)"
    if accelerator.scaler is not None:
        return "fp16 loss scaling decides on the host whether to skip a step"
    if cfg.optim.name not in CAPTURABLE:
        return f"optim.name={cfg.optim.name} keeps its step count on the host"
    return None


def make_step(model, optimizer, accelerator: Accelerator, cfg: Config, objective: Objective, stats: StepStats):
    """GraphStep where `train.cuda_graph` asks for it and capture works, else EagerStep; any fall
    back from a GPU is said in one line."""
    mode = cfg.train.cuda_graph
    reason = "train.cuda_graph=off" if mode == "off" else graph_unsupported(accelerator, cfg)
    if reason is None:
        try:
            return GraphStep(model, optimizer, accelerator, cfg, objective, stats)
        except RuntimeError as e:
            reason = f"capture failed: {str(e).splitlines()[0]}"
    if mode == "on" or (mode == "auto" and accelerator.device.type == "cuda"):
        accelerator.print(f"CUDA graph off, eager steps: {reason}")
    return EagerStep(model, optimizer, accelerator, cfg, objective, stats)
