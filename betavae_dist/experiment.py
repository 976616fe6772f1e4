"""One run's configuration, composed of the settings each part declares (none of these modules
imports torch: composing and checking a config loads no engine):

    data   data/settings.py         DataConfig         model  model_config.py  ModelConfig
    loss   objectives/settings.py   the objective's    optim  optim_config.py  OptimConfig
    train  train_config.py          TrainConfig        eval   metrics/         EvalConfig (and each metric's)

`from_sources(files, overrides)` and `load_or_exit(argv, prog)` build it (config.py's machinery);
`python -m betavae_dist.train --help` lists every key with its type, default and meaning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from . import config, config_files
from .config import MAX_SEED, ConfigError, section, setting
from .data.settings import DATASETS, DataConfig
from .metrics import EvalConfig
from .model_config import ModelConfig
from .objectives.settings import BetaSettings, LossConfig
from .optim_config import OptimConfig
from .train_config import TrainConfig


def default_loss() -> LossConfig:
    return BetaSettings(objective="beta")


@dataclass
class Config:
    run_dir: str = setting("runs/dsprites_beta4", "where config, metrics, checkpoints, export and figures go",
                           resumable=True)
    seed: int = setting(0, "initial weights, data order and noise", low=0, high=MAX_SEED)
    data: DataConfig = section(DataConfig)
    model: ModelConfig = section(ModelConfig)
    loss: LossConfig = section(LossConfig, factory=default_loss)
    optim: OptimConfig = section(OptimConfig)
    train: TrainConfig = section(TrainConfig)
    eval: EvalConfig = section(EvalConfig, resumable=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> None:
        """What no one part can check alone."""
        channels = DATASETS[self.data.name].image_shape[0]
        if self.data.source == "dataset" and self.model.channels != channels:
            raise ConfigError(f"model.channels={self.model.channels}: data.name={self.data.name} images have "
                              f"{channels} channel(s)")
        if self.loss.trains_critic and self.optim.name not in ("adam", "adamw"):
            raise ConfigError(f"loss.objective={self.loss.objective} trains its critic with Adam settings of its own: "
                              f"optim.name=adam or adamw, not {self.optim.name}")
        if self.eval.every and self.model.channels != channels:
            raise ConfigError(f"eval.every: the metrics run on data.name={self.data.name} ({channels} channel(s)) but "
                              f"model.channels={self.model.channels}; set eval.every=0")


def from_sources(files: str | list[str] | None, overrides: list[str]) -> Config:
    """Defaults, then each YAML file in order, then `key=value` overrides; checked."""
    return config_files.load(Config, files, overrides)


def from_items(items: list[tuple[str, Any, str]]) -> Config:
    """From (key, value, where it came from) items: config_files.mapping_items, override_items."""
    return config.build(Config, items)


def load_or_exit(argv: list[str], prog: str) -> Config:
    return config_files.load_or_exit(Config, argv, prog)
