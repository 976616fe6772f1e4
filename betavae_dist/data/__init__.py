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
    manifest.py  the shard set's manifest (ours, or a wids index)
    images.py    one image brought to the model's mode and size (the stream and the writer)
    index.py     the manifest of shards written by other tools (`python -m betavae_dist.data.index`)
    tars.py      the tar reader the stream uses

`data.name` picks the factor dataset from `DATASETS`: the training data when `data.source` is
`dataset`, and always the dataset the disentanglement metrics sample from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import setting
from ..registry import ConfigError, Registry
from .dataset import DataError, FactorDataset
from .cars3d import Cars3D
from .dsprites import DSprites
from .dsprites_variants import ColorDSprites, NoisyDSprites, ScreamDSprites
from .mpi3d import MPI3D, MPI3DReal
from .norb import SmallNORB
from .shapes3d import Shapes3D

if TYPE_CHECKING:
    import torch

    from .batches import Batching

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


@dataclass
class DataConfig:
    name: str = setting("dsprites", "the factor dataset: training data of source \"dataset\", and what the metrics use",
                        choices=DATASETS)
    source: str = setting("dataset", "\"dataset\" (the one `name` gives) or \"webdataset\" (tar shards)",
                          choices=("dataset", "webdataset"))
    dsprites_npz: str = setting("", "optional path to the original dsprites_ndarray_*.npz")
    path: str = setting("", "the data set's own files: shapes3d's 3dshapes.h5, mpi3d_*'s .npz, cars3d's and "
                        "smallnorb's folders")
    seed: int = setting(0, "color/noisy/scream_dsprites: draws each image's colour, noise or crop (fixed data, not "
                        "the run's seed)", low=0)
    shards: str = setting("", "webdataset: a shard directory, its manifest.json, or URLs with brace expansion "
                          "(pipe:..., http://...)")
    manifest: str = setting("", "webdataset: manifest.json of the shards; default: beside the first shard")
    workers: int = setting(2, "webdataset: DataLoader worker processes per rank", low=0, high=1024, resumable=True)
    shuffle_buffer: int = setting(1000, "webdataset: samples in each worker's shuffle buffer", positive=True)
    resize: str = setting("off", "webdataset: \"crop\" brings images of any size to 64x64 (the short side resized, "
                          "the centre cropped); \"off\" refuses other sizes", choices=("off", "crop"))
    on_error: str = setting("raise", "webdataset: \"raise\" or \"skip\" bad samples and shards", choices=("raise", "skip"))
    max_skip_fraction: float = setting(0.01, "webdataset: stop once a worker skipped more than this", low=0, high=1)

    def check(self) -> None:
        if self.source == "webdataset" and not self.shards:
            raise ConfigError("data.source=webdataset needs data.shards (shard URLs)")


def build_dataset(data: DataConfig) -> FactorDataset:
    """The factor dataset `data.name`: training data of `data.source: dataset`, and what the metrics use."""
    dataset = DATASETS.choose(data.name, "data.name")
    try:
        return dataset.from_config(data)
    except (OSError, ValueError) as e:
        raise DataError(str(e)) from None


def build_batches(data: DataConfig, seed: int, channels: int, batching: Batching, device: torch.device):
    """The training micro-batch source named by `data.source`, yielding this rank's micro-batches
    (`batching`: plan.py's) of `channels`-channel images (model.channels) on `device`, in the data
    order of `seed`. Imported here, not with the config: torch, and webdataset for runs that stream."""
    from .batches import DeviceBatches, StepBatches

    if data.source == "webdataset":
        from .stream import ShardStream

        return ShardStream(data, seed, channels, batching, device)
    if device.type == "cuda":
        return DeviceBatches(build_dataset(data), seed, batching, device)
    return StepBatches(build_dataset(data), seed, batching)
