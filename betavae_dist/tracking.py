"""What the trackers (TensorBoard, W&B, ... through Accelerate) get besides the logged lines:
the run's settings, with its metrics as TensorBoard's HPARAMS columns; the figures at each
evaluation; each latent's KL as a scalar of its own. Rank 0 holds the trackers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .config import flat
from .metrics import METRICS

if TYPE_CHECKING:
    from accelerate import Accelerator

    from .experiment import Config


def metric_tags(cfg: Config) -> list[str]:
    """The scalars that sum a run up: training's loss terms and, if it evaluates, each headline score."""
    evaluated = [f"eval/{name}.{METRICS[name].headline}" for name in cfg.eval.metric_names] if cfg.eval.every else []
    return ["train/loss", "train/recon", "train/kl", *evaluated]


def start(accelerator: Accelerator, cfg: Config, name: str) -> None:
    """Open the trackers of `train.report_to` under `name` with the run's settings. TensorBoard's
    are written with the metric tags (Accelerate's own call lists no metric, so its HPARAMS tab had
    no metric column), in the run's own directory, where those scalars are."""
    accelerator.init_trackers(name)
    if not accelerator.is_main_process:
        return
    settings = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in flat(cfg.to_dict()).items()}
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            from torch.utils.tensorboard.summary import hparams

            for summary in hparams(settings, {tag: 0.0 for tag in metric_tags(cfg)}):  # the tags, not values
                tracker.writer.file_writer.add_summary(summary)
            tracker.writer.flush()
        else:
            tracker.store_init_configuration(settings)


def scalars(values: dict) -> dict:
    """Values as trackers take them: a list (each latent's KL) becomes one scalar per entry."""
    out = {}
    for key, value in values.items():
        if isinstance(value, list):
            out.update({f"{key}/{i:02d}": v for i, v in enumerate(value)})
        else:
            out[key] = value
    return out


def log_figures(accelerator: Accelerator, figures: dict[str, np.ndarray], step: int) -> None:
    """The figures in TensorBoard's image tab at `step` (other trackers take scalars only here)."""
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard" and accelerator.is_main_process:
            for name, image in figures.items():
                tracker.writer.add_image(name, image, step, dataformats="HWC")
