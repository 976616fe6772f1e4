"""The `data` section: the training data's settings, and the factor datasets `data.name` names
(each in its own module, imported the first time it is looked up)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import setting
from ..registry import ConfigError, Lazy, Registry

DATASETS = Registry("dataset", {
    "dsprites": Lazy("betavae_dist.data.dsprites:DSprites"),  # Higgins et al. 2017, rendered here
    "color_dsprites": Lazy("betavae_dist.data.dsprites_variants:ColorDSprites"),  # disentanglement_lib's variants of it
    "noisy_dsprites": Lazy("betavae_dist.data.dsprites_variants:NoisyDSprites"),
    "scream_dsprites": Lazy("betavae_dist.data.dsprites_variants:ScreamDSprites"),
    "shapes3d": Lazy("betavae_dist.data.shapes3d:Shapes3D"),  # Kim & Mnih 2018
    "cars3d": Lazy("betavae_dist.data.cars3d:Cars3D"),  # Reed et al. 2015
    "smallnorb": Lazy("betavae_dist.data.norb:SmallNORB"),  # LeCun et al. 2004
    "mpi3d_toy": Lazy("betavae_dist.data.mpi3d:MPI3D"),  # Gondal et al. 2019
    "mpi3d_realistic": Lazy("betavae_dist.data.mpi3d:MPI3D"),
    "mpi3d_real": Lazy("betavae_dist.data.mpi3d:MPI3DReal"),
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
