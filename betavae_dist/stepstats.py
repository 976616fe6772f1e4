"""A step's statistics on the device: the sums of the objective's terms and the gradient norm, and
the first step whose loss or gradient was not finite; read back once per log, checkpoint and
evaluation step (`StepStats.read`, the one host read and the one all-reduce)."""

from __future__ import annotations

import torch

NO_STEP = 2**62  # "no bad step yet"; exact in float64


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
