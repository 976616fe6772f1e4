"""One optimiser step, run eagerly or replayed as one CUDA graph; its statistics stay on the device.

An ordinary step never makes the host wait for the GPU: the loss terms and the gradient norm are
summed on the device, and the first step with a non-finite loss or gradient is recorded there
(stepstats.py). `StepStats.read` is the one host read (and the one all-reduce); the trainer calls it
at log, checkpoint and evaluation steps only, which are the same steps on every rank.

`DeviceStep` is the skeleton of a step whose inputs (images, noise, step number, the objective's
schedule values) are copied into buffers on the device before it runs: the solo `GraphStep` here
and the pack's `PackStep` (pack/step.py) fill in only the loss of a micro-batch, the gradient norm
and what comes before the update. Captured as one CUDA graph (cuda_graph.py) and replayed, the
whole step is one launch instead of hundreds of Python-dispatched kernels, which is what a small
model at batch 64 is bound by on a GPU; without a graph the same body runs eagerly.
`EagerStep` is the step through Accelerate: CPUs, DDP, DeepSpeed and fp16 loss scaling.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from torch.nn.utils import clip_grad_norm_, get_total_norm

from .cuda_graph import capture, set_capturable
from .data.batches import upload
from .distributed import unwrap
from .objectives.base import Objective
from .stepstats import StepStats

if TYPE_CHECKING:
    from .plan import Plan


def loss_terms(model, x: torch.Tensor, noise: torch.Tensor, objective: Objective,
               schedule: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """What to differentiate and the detached terms of one micro-batch, in `objective.terms` order;
    `noise`: the reparameterisation noise and the regulariser's own columns (Objective.noise_width)."""
    noise, schedule = objective.split_noise(noise, schedule)
    output, mean, logvar, z = model(x, noise)
    terms = objective(output, x, mean, logvar, z, schedule)
    return objective.minimised(terms), torch.stack([terms[name] for name in objective.terms]).detach()


class EagerStep:
    """The step as ordinary calls through Accelerate; what does not change during a run is looked up once."""

    description = "eager steps"

    def __init__(self, model, optimizer, accelerator: Accelerator, plan: Plan, stats: StepStats):
        self.model, self.optimizer, self.accelerator, self.clip = model, optimizer, accelerator, plan.cfg.optim.grad_clip
        self.objective, self.stats, self.rows = plan.objectives[0], stats, plan.batching.rows
        self.memory_format = unwrap(accelerator, model).memory_format
        self.deepspeed = accelerator.distributed_type == DistributedType.DEEPSPEED
        self.check_grad = accelerator.scaler is None  # fp16 loss scaling expects the odd overflow and skips that step
        if not self.deepspeed:
            set_capturable(optimizer.optimizer, False)

    def _grad_norm(self) -> torch.Tensor | None:
        clip = self.clip
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


class DeviceStep:
    """A step whose inputs are buffers on the device, filled before each step and never reallocated
    (a graph reads them): `images()` makes one micro-batch's image buffer, `lead` is the shape before
    a micro-batch's rows ((): one model; (K,): a pack's points). Subclasses give `micro_loss`,
    `gradient_norm` and, if need be, `before_update`; `capture_graph()` makes the step one graph."""

    def __init__(self, plan: Plan, optimizer: torch.optim.Optimizer, stats: StepStats, images: Callable[[], torch.Tensor],
                 lead: tuple[int, ...] = ()):
        self.optimizer, self.stats, self.rows = optimizer, stats, plan.batching.rows
        device, micro, objective = plan.device, plan.batching.micro, plan.objectives[0]
        self.x = [images() for _ in self.rows]
        self.noise = [torch.zeros(*lead, micro, objective.noise_width, device=device) for _ in self.rows]
        self.step = torch.zeros((), dtype=torch.int64, device=device)
        self.schedule = {name: torch.zeros(lead, device=device) for name in objective.schedule(0)}
        self.graph: torch.cuda.CUDAGraph | None = None

    def micro_loss(self, x: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What to differentiate for one micro-batch, and its detached terms (per point)."""
        raise NotImplementedError

    def gradient_norm(self) -> torch.Tensor:
        """The gradient norm (per point), after clipping the gradients where optim.grad_clip says."""
        raise NotImplementedError

    def before_update(self) -> None:
        """What the gradients need after the statistics and before the optimiser's step."""

    def body(self) -> None:
        losses = 0
        for x, noise in zip(self.x, self.noise):
            loss, terms = self.micro_loss(x, noise)
            (loss / len(self.rows)).backward()  # what accelerator.backward does with accumulation
            losses = losses + terms
        self.stats.add(losses / len(self.rows), self.gradient_norm(), self.step, check_grad=True)
        self.before_update()
        self.optimizer.step()

    def capture_graph(self, params: list[torch.Tensor]) -> str | None:
        """Capture `body` as one graph: None, or why it could not be (then everything is as it was,
        for eager steps)."""
        try:
            self.graph = capture(self.body, self.optimizer, params, self.stats.clear)
        except RuntimeError as e:
            return f"capture failed: {str(e).splitlines()[0]}"
        return None

    def run(self, step: int, images: list[torch.Tensor], noise: torch.Tensor, schedule: dict) -> None:
        """One optimiser step: `images` holds each micro-batch's, `noise` the whole global batch's
        (rows last but one), `schedule` the objective's values (a float, or one per point)."""
        for x, noise_buffer, rows, batch in zip(self.x, self.noise, self.rows, images):
            x.copy_(batch)
            noise_buffer.copy_(noise[..., rows, :])
        self.step.fill_(step)
        for name, value in schedule.items():
            if isinstance(value, (int, float)):
                self.schedule[name].fill_(value)
            else:
                self.schedule[name].copy_(upload(torch.tensor(value, dtype=torch.float32), self.step.device))
        if self.graph is not None:
            self.graph.replay()
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.body()
        self.stats.steps += 1


class GraphStep(DeviceStep):
    """One model's step (one process on one GPU), replayed as one CUDA graph once `capture_graph`
    made it one (make_step); before, the same step runs eagerly (what the tests compare on a CPU)."""

    def __init__(self, model, optimizer, plan: Plan, stats: StepStats):
        memory_format, channels = model.memory_format, plan.cfg.model.channels
        super().__init__(plan, optimizer, stats, lambda: torch.zeros(
            plan.batching.micro, channels, 64, 64, device=plan.device).contiguous(memory_format=memory_format))
        self.model, self.objective, self.clip = model, plan.objectives[0], plan.cfg.optim.grad_clip

    @property
    def description(self) -> str:
        return "one CUDA graph per step" if self.graph is not None else "eager steps (device buffers)"

    def micro_loss(self, x, noise):
        return loss_terms(self.model, x, noise, self.objective, self.schedule)

    def gradient_norm(self) -> torch.Tensor:
        params = list(self.model.parameters())
        if self.clip > 0:
            return clip_grad_norm_(params, self.clip, foreach=True)
        return get_total_norm([p.grad for p in params], foreach=True)

    def __call__(self, step: int, micro_batches, noise: torch.Tensor, schedule: dict[str, float]) -> int:
        batches = [next(micro_batches) for _ in self.rows]
        self.run(step, [images for images, _ in batches], noise, schedule)
        return batches[-1][1]


def launch_obstacle(accelerator: Accelerator) -> str | None:
    """Why this launch rules out a CUDA graph (plan.make_plan), or None."""
    if accelerator.distributed_type != DistributedType.NO:
        return f"{accelerator.distributed_type.value} runs eager (capture is supported for one process on one GPU)"
    if accelerator.scaler is not None:
        return "fp16 loss scaling decides on the host whether to skip a step"
    return None


def make_step(model, optimizer, accelerator: Accelerator, plan: Plan, stats: StepStats):
    """GraphStep where the plan allows it and capture works, else EagerStep; any fall back that is
    due a word (Plan.eager_line) is said in one line."""
    why = plan.why_eager
    if why is None:
        step = GraphStep(model, optimizer.optimizer, plan, stats)
        why = step.capture_graph(list(model.parameters()))
        if why is None:
            return step
    if line := plan.eager_line(why):
        accelerator.print(line)
    return EagerStep(model, optimizer, accelerator, plan, stats)
