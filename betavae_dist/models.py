"""The β-VAE module (an encoder and a decoder of architectures.py, `model.arch`), building it from
a run's settings (model_config.py), and writing and loading exports (see export/)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from huggingface_hub import ModelCard, PyTorchModelHubMixin, snapshot_download
from huggingface_hub.errors import HfHubHTTPError

from .export import (CONFIG, EVALUATION, FORMAT, WEIGHTS, ExportError, check_header, check_state_dict, export_config,
                     format_version, read_export_config, vae_state, write_files)
from .export import layout
from .export.card import CARD, model_card
from .model_config import ARCHITECTURES, IMAGE_SIZE, MAX_CHANNELS, MAX_LATENTS, ModelConfig
from .objectives import OBJECTIVES


def build_model(m: ModelConfig, objective: str) -> BetaVAE:
    """A run's network: `model.*`, and the critic of `objective` (loss.objective) where it has one;
    after `set_seed(seed)` the VAE's initial weights are the same whatever the objective."""
    critic = OBJECTIVES[objective].critic
    return BetaVAE(m.arch, m.latents, m.channels, critic(m.latents) if critic is not None else None)


def activation_bytes(arch: str, latents: int, channels: int) -> int:
    """Bytes of fp32 layer outputs one sample makes in a forward pass (what backward keeps),
    counted on the meta device: nothing is allocated."""
    with torch.device("meta"):
        model, total = BetaVAE(arch, latents, channels), [0]

        def count(module, inputs, output):
            total[0] += output.numel()

        hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
        model.encoder(torch.empty(1, channels, IMAGE_SIZE, IMAGE_SIZE))  # the layers only, not the model's methods
        model.decoder(torch.empty(1, latents))
    for hook in hooks:
        hook.remove()
    return 4 * total[0]


def write_export(state_dict: dict[str, torch.Tensor], cfg, out_dir: Path, evaluation: dict | None = None) -> None:
    """A trained state (a checkpoint's, the module's keys) as an export of the run `cfg`, with its
    card and, where it was evaluated, its evaluation.json."""
    with torch.device("meta"):  # the layers' names and shapes only
        model = BetaVAE(cfg.model.arch, cfg.model.latents, cfg.model.channels)
    model.write(vae_state(state_dict), export_config(cfg.model, cfg.to_dict()), out_dir, evaluation)


def read_evaluation(export: Path) -> dict | None:
    """An export's scores: its own evaluation.json (evaluate's default), else its run directory's
    (where sweeps write it); None when it was not evaluated or the file is not JSON."""
    run_dir = [export.parent / EVALUATION] if (export.parent / "config.yaml").is_file() else []
    path = next((p for p in [export / EVALUATION, *run_dir] if p.is_file()), None)
    try:
        return json.loads(path.read_text()) if path else None
    except (OSError, ValueError):
        return None


class BetaVAE(nn.Module, PyTorchModelHubMixin, library_name="betavae-dist", tags=["beta-vae", "disentanglement"]):
    """The network. `save_pretrained(dir)`, `push_to_hub(repo_id)` (from huggingface_hub's mixin) and
    `from_pretrained(dir or repo_id)` read and write our export format (export/)."""

    def __init__(self, arch: str = "conv64", latents: int = 10, channels: int = 1, critic: nn.Module | None = None):
        """`critic`: a network its objective trains beside it (FactorVAE's discriminator), saved in
        checkpoints as `critic.*` and left out of exports."""
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHITECTURES)}")
        self.arch, self.latents, self.channels = arch, latents, channels
        self.encoder, self.decoder = ARCHITECTURES[arch](latents, channels)
        if critic is not None:
            self.critic = critic
        self.export_config: dict | None = None  # config.json of the export it was loaded from
        self.evaluation: dict | None = None  # and its evaluation.json, if it was evaluated

    @property
    def memory_format(self) -> torch.memory_format:
        """oneDNN and cuDNN run these convolutions faster on NHWC tensors."""
        return torch.contiguous_format if self.arch == "fc" else torch.channels_last

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype: bf16/fp16 when DeepSpeed casts the model, fp32 otherwise."""
        return next(self.parameters()).dtype

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(x.to(self.dtype)).chunk(2, dim=1)
        return mean, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z.to(self.dtype))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Reparameterised pass (training): (decoder output, mean, logvar, z) with z = mean + exp(logvar
        / 2) * noise, noise ~ N(0, I) given by the caller. Without noise, `model(images)`: the
        reconstruction of the mean code, an image (the decoder's output through the likelihood's mean:
        sigmoid for Bernoulli logits)."""
        if noise is None:
            mean, _ = self.encode(x)
            out = self.decode(mean)
            return torch.sigmoid(out) if self._config().get("likelihood", "bernoulli") == "bernoulli" else out
        mean, logvar = self.encode(x)
        z = mean + torch.exp(0.5 * logvar) * noise.to(mean.dtype)
        return self.decode(z), mean, logvar, z

    def _config(self) -> dict:
        """config.json of the export it was loaded from, else the architecture alone. (Not named
        `config`: Accelerate's DeepSpeed set-up reads a model's `config` as a transformers one.)"""
        return self.export_config or {"model": {"arch": self.arch, "latents": self.latents, "channels": self.channels}}

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        """The card `save_pretrained` writes as README.md: training config and scores (export/card.py)."""
        return model_card(self._config(), self.evaluation)

    def _save_pretrained(self, save_directory: Path) -> None:
        """The export format (the mixin's save_pretrained and push_to_hub call this)."""
        self.write(vae_state(self.state_dict()), self._config(), save_directory, self.evaluation)

    def write(self, state: dict[str, torch.Tensor], config: dict, out_dir: Path, evaluation: dict | None = None) -> None:
        """`state` (this network's, the module's keys) as an export of format 2 (export/layout.py),
        with its card (README.md) and its evaluation.json where there is one."""
        config = {k: v for k, v in config.items() if k not in ("format", "layout")}
        described = layout.describe(self, self.latents, self.channels, IMAGE_SIZE, config.get("likelihood", "bernoulli"))
        texts = {CARD: str(model_card(config, evaluation))}
        if evaluation:
            texts[EVALUATION] = json.dumps(evaluation, indent=2)
        write_files(layout.to_export(state, self), {**config, "layout": described}, out_dir,
                    layout.metadata(described, FORMAT), texts)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """The Hub mixin's push_to_hub (the export format, card and evaluation.json); a Hub that cannot
        be reached, or that refuses the token, is one line (ExportError) instead of the HTTP client's
        traceback."""
        try:
            return super().push_to_hub(repo_id, **kwargs)
        except Exception as e:  # the HTTP client's errors vary with its version (httpx, requests)
            raise ExportError(f"push_to_hub {repo_id}: the Hugging Face Hub cannot be reached or refused the upload "
                              f"({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}); check "
                              "the network (HF_ENDPOINT) and the token (`hf auth login`, or token=...)") from None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, force_download: bool = False,
                        token: str | bool | None = None, cache_dir: str | Path | None = None, local_files_only: bool = False,
                        revision: str | None = None, map_location: str | torch.device = "cpu", strict: bool = True,
                        proxies: dict | None = None, resume_download: bool | None = None) -> "BetaVAE":
        """Rebuild a model from `config.json` + `model.safetensors` in a directory or, for any other
        name, a Hub repository (those two files and evaluation.json only, through the Hub's cache); no
        pickle is involved. The arguments are the Hub mixin's; `strict=False` lets tensors be missing or
        extra (those present must still match).

        Nothing is allocated before the config is within bounds and the file's header (names,
        shapes, float32) matches the model it describes; weights that are not finite are refused.
        """
        if torch.device(map_location).type == "cuda" and not torch.cuda.is_available():
            raise ExportError(f"map_location={str(map_location)!r}: no CUDA device is visible here "
                              "(torch.cuda.is_available() is False); load with map_location='cpu'")
        path_or_repo_id, directory = pretrained_model_name_or_path, Path(pretrained_model_name_or_path)
        if not directory.is_dir():
            try:
                directory = Path(snapshot_download(str(path_or_repo_id), allow_patterns=[CONFIG, WEIGHTS, EVALUATION],
                                                   revision=revision, cache_dir=cache_dir, token=token, proxies=proxies,
                                                   force_download=force_download, local_files_only=local_files_only))
            except (OSError, ValueError, HfHubHTTPError) as e:  # no such repository, offline, not a repo id
                raise ExportError(f"{path_or_repo_id}: not an export directory, and not a Hub repository that can be "
                                  f"read ({type(e).__name__}: {str(e).strip().splitlines()[0]})") from None
        config_path, weights_path = directory / CONFIG, directory / WEIGHTS
        config, name, latents, channels = read_export_config(directory)
        version = format_version(config, config_path)
        if name not in ARCHITECTURES or not 1 <= latents <= MAX_LATENTS or not 1 <= channels <= MAX_CHANNELS:
            raise ExportError(f"{config_path}: model {name!r} with {latents} latents and {channels} channels is out of "
                              f"bounds (arch one of {', '.join(ARCHITECTURES)}, latents 1..{MAX_LATENTS}, "
                              f"channels 1..{MAX_CHANNELS})")
        with torch.device("meta"):  # shapes only: nothing allocated yet
            skeleton = cls(name, latents, channels)
        module_key = layout.from_export(skeleton, version)
        check_header(skeleton, weights_path, strict, module_key)
        try:
            state = {module_key(k): v for k, v in load_file(weights_path, device=str(map_location)).items()}
        except (SafetensorError, OSError) as e:
            raise ExportError(f"{weights_path}: unreadable safetensors file ({e})") from None
        bad = next((k for k, v in state.items() if not torch.isfinite(v).all()), None)
        if bad:
            raise ExportError(f"{weights_path}: tensor {bad} has non-finite values")
        model = cls(name, latents, channels).to(map_location)
        check_state_dict(model, state, weights_path, strict)
        wanted = model.state_dict().keys()
        model.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=strict)
        model.export_config = model.config = config  # config: what the Hub mixin's users read
        model.evaluation = read_evaluation(directory)
        return model.eval()
