"""A whole optimiser step captured as one CUDA graph (step.py's GraphStep, pack/step.py's PackStep):
warm-up steps that leave no trace, and Adam's step counters on the device."""

from __future__ import annotations

import torch

WARMUP_STEPS = 3


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
