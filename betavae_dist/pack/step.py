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

from ..cuda_graph import set_capturable
from ..step import DeviceStep
from ..stepstats import StepStats
from .model import PackedVAE

if TYPE_CHECKING:
    from ..plan import Plan


def per_point_norms(grads: list[torch.Tensor]) -> torch.Tensor:
    """(K,): the global gradient norm of each point (rows of the stacked gradients)."""
    return torch.stack([g.float().square().sum(list(range(1, g.dim()))) for g in grads]).sum(0).sqrt()


def per_point(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(K,) values shaped to broadcast over a stacked tensor's rows."""
    return values.view(-1, *[1] * (like.dim() - 1))


class PackStep(DeviceStep):
    """One optimiser step of all points: `run(step, images, noise, schedule)` with each micro-batch's
    (K, b, C, H, W) images, (K, batch, noise width) noise and K values of each schedule value."""

    def __init__(self, model: PackedVAE, optimizer: torch.optim.Optimizer, plan: Plan, stats: StepStats):
        super().__init__(plan, optimizer, stats, lambda: model.images(plan.batching.micro), lead=(model.size,))
        self.model, self.clip = model, plan.cfg.optim.grad_clip
        why = plan.why_eager or self.capture_graph(list(model.params.values()))
        if self.graph is None:
            set_capturable(optimizer, False)
            if line := plan.eager_line(why):
                print(line)
        self.description = f"{model.size} points packed, " + ("one CUDA graph per step" if self.graph else "eager steps")

    def micro_loss(self, x, noise):
        terms = self.model.loss_terms(x, noise, self.schedule)
        return terms[:, 0].sum(), terms[:, 1:].detach()  # points are independent: one backward for all

    def gradient_norm(self) -> torch.Tensor:
        grads = [p.grad for p in self.model.params.values()]
        norms = per_point_norms(grads)
        if self.clip > 0:  # clip_grad_norm_'s rule, per point
            coef = (self.clip / (norms + 1e-6)).clamp(max=1.0)
            for g in grads:
                g.mul_(per_point(coef, g))
        return norms

    def before_update(self) -> None:
        alive = self.stats.alive
        for p in self.model.params.values():  # a failed point's gradient is zero from its bad step on
            p.grad.copy_(torch.where(per_point(alive, p.grad), p.grad, 0.0))


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
