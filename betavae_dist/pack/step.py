"""One optimiser step of every point of a pack, eager or replayed as one CUDA graph.

As in the solo step (../step.py), nothing is read back to the host at an ordinary step: each
point's loss terms and gradient norm are summed on the device, and so is the first step at
which its loss or gradient norm was not finite. A point whose step is not finite is marked
failed on the device at once: its gradients are zeroed from that step on, so its weights stay
finite and the other points never see it (every operation is per point). The trainer reads the
flags at log and checkpoint steps, reports the point, and freezes it for good (`freeze`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..data.batches import micro_batch_size, micro_slice, upload
from ..objectives import build_objective
from ..step import StepStats, capture, set_capturable
from .model import PackedVAE

if TYPE_CHECKING:
    from ..experiment import Config


def per_point_norms(grads: list[torch.Tensor]) -> torch.Tensor:
    """(K,): the global gradient norm of each point (rows of the stacked gradients)."""
    return torch.stack([g.float().square().sum(list(range(1, g.dim()))) for g in grads]).sum(0).sqrt()


class PackStep:
    """`step(step, images, noise, schedule)`: one optimiser step of all points. `images` gives
    (K, b, C, H, W) for a micro-batch index, `noise` is (K, batch, noise width) and `schedule` maps
    each schedule value to its K per-point values."""

    def __init__(self, model: PackedVAE, optimizer: torch.optim.Optimizer, cfg: Config, stats: StepStats,
                 use_graph: bool):
        self.model, self.optimizer, self.stats, self.clip = model, optimizer, stats, cfg.optim.grad_clip
        micro = micro_batch_size(cfg, 1)
        self.rows = [micro_slice(m, 1, 0, micro) for m in range(cfg.train.grad_accum)]
        device, k = model.device, model.size
        # Inputs of the step: filled before each step, never reallocated (a graph reads them).
        self.x = [model.images(micro) for _ in self.rows]
        objective = build_objective(cfg)
        self.noise = [torch.zeros(k, micro, objective.noise_width, device=device) for _ in self.rows]
        self.step = torch.zeros((), dtype=torch.int64, device=device)
        self.schedule = {name: torch.zeros(k, device=device) for name in objective.schedule(0)}
        self.graph, why_eager = None, ""
        if use_graph:
            try:
                self.graph = capture(self._body, optimizer, list(model.params.values()), stats.clear)
            except RuntimeError as e:  # capture puts everything back for eager steps
                why_eager = f" (CUDA graph capture failed: {str(e).splitlines()[0]})"
        if self.graph is None:
            set_capturable(optimizer, False)
        self.description = f"{k} points packed, " + ("one CUDA graph per step" if self.graph else "eager steps" + why_eager)

    def _body(self) -> None:
        losses = 0
        for x, noise in zip(self.x, self.noise):
            terms = self.model.loss_terms(x, noise, self.schedule)
            (terms[:, 0].sum() / len(self.rows)).backward()  # points are independent: one backward for all
            losses = losses + terms[:, 1:].detach()
        grads = [p.grad for p in self.model.params.values()]
        norms = per_point_norms(grads)
        if self.clip > 0:  # clip_grad_norm_'s rule, per point
            coef = (self.clip / (norms + 1e-6)).clamp(max=1.0)
            for g in grads:
                g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))
        self.stats.add(losses / len(self.rows), norms, self.step, check_grad=True)
        alive = self.stats.alive
        for g in grads:  # a failed point's gradient is zero from its bad step on
            g.copy_(torch.where(alive.view(-1, *[1] * (g.dim() - 1)), g, 0.0))
        self.optimizer.step()

    def __call__(self, step: int, images, noise: torch.Tensor, schedule: dict[str, list[float]]) -> None:
        for m, (x, noise_buffer, rows) in enumerate(zip(self.x, self.noise, self.rows)):
            x.copy_(images(m))
            noise_buffer.copy_(noise[:, rows])
        self.step.fill_(step)
        for name, values in schedule.items():
            self.schedule[name].copy_(upload(torch.tensor(values, dtype=torch.float32), self.model.device))
        if self.graph is not None:
            self.graph.replay()
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self._body()
        self.stats.steps += 1


@torch.no_grad()
def freeze(model: PackedVAE, optimizer: torch.optim.Optimizer, stats: StepStats, k: int, step: int) -> None:
    """Point k stops for good: it counts as failed at `step` on the device (its gradients are zeroed
    from now on) and its weights and optimiser state become zeros, which Adam, AdamW and SGD then
    leave unchanged."""
    stats.first_bad[k].clamp_(max=step)
    model.set_point(k, None)
    for p in model.params.values():
        for value in optimizer.state.get(p, {}).values():
            if torch.is_tensor(value) and value.dim() > 0:
                value[k].zero_()
