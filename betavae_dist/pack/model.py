"""K β-VAEs of one architecture as stacked parameters, run together with torch.func.

Parameter `name` of point k is row k of the stacked tensor `params[name]` (shape (K, ...)). One
`vmap` over `functional_call` runs every point on its own images and noise, and evaluates the
objective in the same vmap with each point's own loss settings as batched scalars: the objective
classes run unchanged. Adam is elementwise, so one Adam over the stacked tensors is K
independent Adams (the points step together, so their step counts agree).

Under `vmap` the K convolutions of a layer run as one grouped convolution over (batch, K·C, H, W).
The stacked weights and the step's images are stored so that this grouped view, and each point's
row, are channels-last like a solo model's (`BetaVAE.memory_format`): conv weights as
(K, O, kh, kw, I), images as (batch, H, W, K, C). On the CPU that took K = 4 from 0.84× to
0.94× the speed of solo steps (benchmarks/sweep_throughput.py).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, get_type_hints

import torch
from accelerate.utils import set_seed
from torch.func import functional_call, vmap

from ..export import vae_state
from ..objectives.base import CRITIC
from ..models import IMAGE_SIZE, BetaVAE, build_model
from ..objectives import OBJECTIVES
from ..objectives.settings import LossConfig

if TYPE_CHECKING:
    from ..experiment import Config


def point_settings(loss: LossConfig) -> tuple[str, ...]:
    """The objective's settings a point may have of its own: its float ones but those the points
    share (Objective.shared_settings), given to the vmapped objective as tensors. (Integer settings
    such as capacity_steps only enter the host-side schedule.)"""
    shared = OBJECTIVES[loss.objective].shared_settings
    return tuple(name for name, kind in get_type_hints(type(loss)).items() if kind is float and name not in shared)


def stack(tensors: list[torch.Tensor], memory_format: torch.memory_format) -> torch.Tensor:
    """(K, ...) with each row, and the grouped view (K·O, I, kh, kw) of a conv weight, in `memory_format`."""
    stacked = torch.stack(tensors)
    if memory_format != torch.channels_last or stacked.dim() != 5:
        return stacked
    _, o, i, h, w = stacked.shape
    return torch.empty_strided(stacked.shape, (o * h * w * i, h * w * i, 1, w * i, i)).copy_(stacked)


class PackedVAE:
    def __init__(self, cfgs: list[Config], device: torch.device, states: list[dict] | None = None,
                 memory_format: torch.memory_format | None = None):
        """`states`: the points' weights; by default each point's initial weights, those of its
        solo run (train.py seeds, then builds the model). `memory_format`: the layout of the
        convolutions, by default the solo model's (benchmarks/sweep_throughput.py compares)."""
        m, self.cfg = cfgs[0].model, cfgs[0]
        if states is None:
            states = []
            for cfg in cfgs:
                set_seed(cfg.seed)
                states.append(build_model(cfg.model, cfg.loss.objective).state_dict())
        with torch.device("meta"):
            self.base = build_model(m, cfgs[0].loss.objective)  # the structure; weights come from `params`
        self.memory_format = memory_format or self.base.memory_format
        self.params = {name: stack([s[name] for s in states], self.memory_format).to(device).requires_grad_()
                       for name in states[0]}
        self.size, self.latents, self.device = len(cfgs), m.latents, device
        self.objective, self.loss, self.model_cfg = OBJECTIVES[cfgs[0].loss.objective], cfgs[0].loss, m
        self.settings = {name: torch.tensor([float(getattr(c.loss, name)) for c in cfgs], device=device)
                         for name in point_settings(cfgs[0].loss)}
        self._terms = vmap(self._point_terms)
        self._means = vmap(self._point_means, in_dims=(0, None))

    @property
    def terms(self) -> tuple[str, ...]:
        return self.objective.terms

    def _point_terms(self, params, x, noise, schedule, settings) -> torch.Tensor:
        objective = self.objective(dataclasses.replace(self.loss, **settings), self.model_cfg)
        if objective.critic is not None:
            objective.bind(self.base.critic, {name.removeprefix(CRITIC): p for name, p in params.items()
                                              if name.startswith(CRITIC)})
        noise, schedule = objective.split_noise(noise, schedule)
        output, mean, logvar, z = functional_call(self.base, params, (x, noise))
        values = objective(output, x, mean, logvar, z, schedule)
        return torch.stack([objective.minimised(values), *(values[name] for name in objective.terms)])

    def loss_terms(self, x: torch.Tensor, noise: torch.Tensor, schedule: dict[str, torch.Tensor]) -> torch.Tensor:
        """(K, 1 + len(terms)): each point's minimised loss (Objective.minimised) and objective terms
        on its own micro-batch; x (K, b, C, H, W), noise (K, b, noise width), schedule values (K,)."""
        return self._terms(self.params, x, noise, schedule, self.settings)

    def images(self, n: int) -> torch.Tensor:
        """A zeroed (K, n, C, H, W) buffer of n images for each point, stored as the grouped convolution reads it."""
        k, c, size = self.size, self.model_cfg.channels, IMAGE_SIZE
        if self.memory_format != torch.channels_last:
            return torch.zeros(k, n, c, size, size, device=self.device)
        strides = (c, size * size * k * c, 1, size * k * c, k * c)
        return torch.empty_strided((k, n, c, size, size), strides, device=self.device).zero_()

    def _point_means(self, params, x) -> torch.Tensor:
        encoder = {name.removeprefix("encoder."): p for name, p in params.items() if name.startswith("encoder.")}
        return functional_call(self.base.encoder, encoder, (x,)).chunk(2, dim=1)[0]

    @torch.no_grad()
    def encode_means(self, x: torch.Tensor) -> torch.Tensor:
        """(K, n, latents): every point's mean code of the same images x (n, C, H, W)."""
        return self._means({name: p.detach() for name, p in self.params.items()}, x.contiguous(memory_format=self.memory_format))

    def finite_points(self) -> torch.Tensor:
        """(K,): whether each point's weights are all finite."""
        return torch.stack([p.detach().flatten(1).isfinite().all(1) for p in self.params.values()]).all(0)

    def point_state(self, k: int) -> dict[str, torch.Tensor]:
        """Point k's weights as a BetaVAE state dict, on the CPU (contiguous, as safetensors writes them)."""
        return {name: p[k].detach().cpu().clone(memory_format=torch.contiguous_format) for name, p in self.params.items()}

    @torch.no_grad()
    def set_point(self, k: int, state: dict[str, torch.Tensor] | None) -> None:
        """Point k's weights from a state dict; None zeroes them (a failed point, frozen)."""
        for name, p in self.params.items():
            p[k].copy_(state[name]) if state is not None else p[k].zero_()

    def point_model(self, k: int) -> BetaVAE:
        m = self.model_cfg
        model = BetaVAE(m.arch, m.latents, m.channels)  # the VAE alone: figures and metrics need no critic
        model.load_state_dict(vae_state(self.point_state(k)))
        return model.to(self.device, memory_format=model.memory_format).eval()
