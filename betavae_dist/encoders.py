"""Anyone's encoder through the evaluator: a representation function scored like our models.

    from betavae_dist.encoders import score_encoder
    results = score_encoder(my_encoder, "dsprites", {"eval.metrics": "beta_vae,mig,dci"})

The convention an encoder follows (disentanglement_lib's representation function, in torch):
it takes a float32 tensor of images (n, channels, 64, 64) with pixels in [0, 1], on the
evaluator's device, and returns the codes (n, d): a tensor or a NumPy array, or a tuple or list
whose first element is that (the mean, when it also returns a log-variance, as ours does). It may
be a `torch.nn.Module` (put in eval mode and moved to the device) or any callable. On the command
line `evaluate --model` takes one as `module:name` (importable from the current directory or
PYTHONPATH) or as a TorchScript file, as disentanglement_lib's challenge exchanged models.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .config_files import mapping_items, override_items
from .errors import BetaVAEError

SPEC = re.compile(r"^([A-Za-z_][\w.]*):([A-Za-z_]\w*)$")  # module:name


class EncoderError(BetaVAEError, RuntimeError):
    """An encoder that cannot be loaded or that breaks the convention; the message names it. (Not a
    ValueError: that would count as a metric defeated by its codes, metrics/fits.py.)"""


class Encoder(nn.Module):
    """A representation function as the evaluator's model (`encode`, as BetaVAE's)."""

    memory_format = torch.contiguous_format

    def __init__(self, function: Callable[[torch.Tensor], Any], name: str = "the encoder"):
        super().__init__()
        self.function, self.name = function, name  # an nn.Module is registered, so it moves with this one

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        try:
            codes = self.function(x)
        except Exception as e:  # the user's code: whatever it raises is named in one line
            raise EncoderError(f"{self.name} failed on images of shape {tuple(x.shape)}: {type(e).__name__}: "
                               f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None
        if isinstance(codes, (tuple, list)):
            codes = codes[0]
        codes = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes)
        if codes.ndim != 2 or len(codes) != len(x):
            raise EncoderError(f"{self.name} gave codes of shape {tuple(codes.shape)} for {len(x)} images; the "
                               "convention is (images, code size) (betavae_dist/encoders.py)")
        return codes.float(), None


def as_encoder(encoder: Any, name: str = "the encoder") -> nn.Module:
    """Our models and baselines as they are (they have `encode`); anything else wrapped in Encoder."""
    if hasattr(encoder, "encode") and hasattr(encoder, "memory_format"):
        return encoder.eval()
    if not callable(encoder):
        raise EncoderError(f"{name} is a {type(encoder).__name__}, not a callable from images to codes")
    return Encoder(encoder, name).eval()


def is_encoder_spec(spec: str) -> bool:
    """Whether `evaluate --model` names someone's encoder: `module:name`, or a file (TorchScript)."""
    return bool(SPEC.match(spec)) and not Path(spec).exists() or Path(spec).is_file()


def load_encoder(spec: str) -> nn.Module:
    """`module:name` (an nn.Module or a function from images to codes) or a TorchScript file."""
    if Path(spec).is_file():
        try:
            scripted = torch.jit.load(spec, map_location="cpu")
        except (RuntimeError, ValueError, OSError) as e:
            raise EncoderError(f"--model {spec}: not a TorchScript file that torch.jit.load reads "
                               f"({str(e).strip().splitlines()[0]})") from None
        return as_encoder(scripted, spec)
    module_name, attribute = SPEC.match(spec).groups()
    if "" not in sys.path and "." not in sys.path:  # `python -m` puts the working directory first; a launcher may not
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise EncoderError(f"--model {spec}: cannot import {module_name} ({e}); is it on PYTHONPATH?") from None
    if not hasattr(module, attribute):
        raise EncoderError(f"--model {spec}: {module_name} has no {attribute}")
    return as_encoder(getattr(module, attribute), spec)


def score_encoder(encoder: Any, data: str = "dsprites", settings: dict | list[str] = (), accelerator=None,
                  progress=None) -> dict:
    """The metrics of `encoder` (the module docstring's convention) on the factor dataset `data`
    (its name; `settings` may set `data.path` and the rest of `data.*`), with `eval.*` from
    `settings` ({"eval.metrics": "mig,dci", "eval.n_train": 1000} or ["eval.metrics=mig,dci", ...])
    over the defaults: the result dict `evaluate` writes (without its record of what was scored).
    Every rank of `accelerator` must call it; the scores are the same on any number of ranks."""
    from .data import build_dataset
    from .experiment import from_items
    from .metrics import evaluate_model

    items = mapping_items(settings, "in the settings") if isinstance(settings, dict) else override_items(list(settings))
    cfg = from_items([("data.name", data, "the data argument"), *items])
    model = as_encoder(encoder)
    device = accelerator.device if accelerator else torch.device("cpu")
    with torch.no_grad():
        return evaluate_model(model.to(device), build_dataset(cfg.data), cfg.eval, accelerator, progress)
