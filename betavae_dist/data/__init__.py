"""Training data and the factor datasets the metrics use.

    dataset.py   the FactorDataset interface (factors, images in [0, 1], sampling)
    dsprites.py  dSprites, rendered from its factor grid (the built-in default)
    dsprites_variants.py  colour-, noisy- and scream-dSprites, painted on those renderings
    shapes3d.py  3D Shapes, read from the user's 3dshapes.h5 (data.path)
    cars3d.py    Cars3D, read from the user's folder of .mat files (data.path)
    norb.py      SmallNORB, read from the user's folder of its binary matrix files (data.path)
    mpi3d.py     MPI3D (toy, realistic, real), read from the user's .npz (data.path)
    batches.py   training batches of a factor dataset as a function of the step (host or GPU)
    stream.py    training batches streamed from WebDataset tar shards
    shards.py    writing those shards (`python -m betavae_dist.data.shards`)
    tars.py      the tar reader the stream uses

`data.name` picks the factor dataset from `DATASETS`: the training data when `data.source` is
`dataset`, and always the dataset the disentanglement metrics sample from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..registry import Registry
from .batches import DeviceBatches, StepBatches
from .dataset import DataError, FactorDataset
from .cars3d import Cars3D
from .dsprites import DSprites
from .dsprites_variants import ColorDSprites, NoisyDSprites, ScreamDSprites
from .mpi3d import MPI3D, MPI3DReal
from .norb import SmallNORB
from .shapes3d import Shapes3D

if TYPE_CHECKING:
    from ..config import Config

DATASETS = Registry("dataset", {
    "dsprites": DSprites,  # Higgins et al. 2017, rendered here
    "color_dsprites": ColorDSprites,  # disentanglement_lib's variants of it
    "noisy_dsprites": NoisyDSprites,
    "scream_dsprites": ScreamDSprites,
    "shapes3d": Shapes3D,  # Kim & Mnih 2018
    "cars3d": Cars3D,  # Reed et al. 2015
    "smallnorb": SmallNORB,  # LeCun et al. 2004
    "mpi3d_toy": MPI3D,  # Gondal et al. 2019
    "mpi3d_realistic": MPI3D,
    "mpi3d_real": MPI3DReal,
})
SOURCES = ("dataset", "webdataset")  # data.source: the factor dataset `data.name`, or tar shards


def build_dataset(cfg: Config) -> FactorDataset:
    """The factor dataset `data.name`: training data of `data.source: dataset`, and what the metrics use."""
    dataset = DATASETS.choose(cfg.data.name, "data.name")
    try:
        return dataset.from_config(cfg.data)
    except (OSError, ValueError) as e:
        raise DataError(str(e)) from None


def build_batches(cfg: Config, world_size: int, rank: int, device: torch.device = torch.device("cpu")):
    """The training micro-batch source named by `data.source`, yielding batches on `device`."""
    if cfg.data.source == "webdataset":
        from .stream import ShardStream  # webdataset is imported only by runs that stream

        return ShardStream(cfg, world_size, rank, device)
    if device.type == "cuda":
        return DeviceBatches(build_dataset(cfg), cfg, world_size, rank, device)
    return StepBatches(build_dataset(cfg), cfg, world_size, rank)
