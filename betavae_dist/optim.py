"""The optimisers `optim.name` names (optim_config.py), built with their parameter groups."""

from __future__ import annotations

import torch

from .objectives.base import CRITIC
from .optim_config import OPTIMIZERS, OptimConfig
from .registry import ConfigError


def adam(params, o: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)


def adamw(params, o: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)


def adagrad(params, o: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(params, lr=o.lr, weight_decay=o.weight_decay)


def sgd(params, o: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=o.lr, momentum=o.beta1, weight_decay=o.weight_decay)


CAPTURABLE = ("adam", "adamw", "sgd")  # state all on the device with `capturable`: a CUDA graph can step them


def parameter_groups(named_parameters, critic_group: dict) -> list[dict]:
    """The model's parameters, and its critic's (`critic.*`, FactorVAE's discriminator) as a group of
    their own with the objective's settings for it (Adam's lr and betas)."""
    named = list(named_parameters)
    vae = [p for name, p in named if not name.startswith(CRITIC)]
    critic = [p for name, p in named if name.startswith(CRITIC)]
    return [{"params": vae}] + ([{"params": critic, **critic_group}] if critic else [])


def build_optimizer(params, o: OptimConfig, offload: bool = False) -> torch.optim.Optimizer:
    """`params`: parameters, or parameter groups (`parameter_groups`); `o`: the `optim.*` settings."""
    if offload:  # ZeRO-Offload steps the optimiser on the CPU with DeepSpeed's own Adam
        if o.name not in ("adam", "adamw"):
            raise ConfigError(f"optim.name={o.name}: DeepSpeed optimizer offload supports adam and adamw only")
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay,
                                adamw_mode=o.name == "adamw")
    return OPTIMIZERS.choose(o.name, "optim.name")(params, o)
