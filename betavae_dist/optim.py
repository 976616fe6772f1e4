"""Optimisers, by the name `optim.name` gives."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .registry import ConfigError, Registry

if TYPE_CHECKING:
    from .config import Config, OptimConfig


def _adam(params, o: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)


def _adamw(params, o: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)


def _adagrad(params, o: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.Adagrad(params, lr=o.lr, weight_decay=o.weight_decay)


def _sgd(params, o: OptimConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=o.lr, momentum=o.beta1, weight_decay=o.weight_decay)


OPTIMIZERS = Registry("optimiser", {"adam": _adam, "adamw": _adamw, "adagrad": _adagrad, "sgd": _sgd})
CAPTURABLE = ("adam", "adamw", "sgd")  # state all on the device with `capturable`: a CUDA graph can step them


def build_optimizer(params, cfg: Config, offload: bool = False) -> torch.optim.Optimizer:
    o = cfg.optim
    if offload:  # ZeRO-Offload steps the optimiser on the CPU with DeepSpeed's own Adam
        if o.name not in ("adam", "adamw"):
            raise ConfigError(f"optim.name={o.name}: DeepSpeed optimizer offload supports adam and adamw only")
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay,
                                adamw_mode=o.name == "adamw")
    return OPTIMIZERS.choose(o.name, "optim.name")(params, o)
