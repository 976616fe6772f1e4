"""Training data and the factor datasets the metrics use.

    settings.py  the `data` section (DataConfig) and the datasets by name (DATASETS)
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

from typing import TYPE_CHECKING

from .dataset import DataError, FactorDataset
from .settings import DATASETS, DataConfig

if TYPE_CHECKING:
    import torch

    from .batches import Batching


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
