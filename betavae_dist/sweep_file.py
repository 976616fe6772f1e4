"""A sweep file: the grid of points a sweep trains, and each point's name, run directory and config.

    base: configs/dsprites_beta4.yaml     # experiment config every point starts from
    out_dir: runs/sweep_dsprites_beta     # one run directory per point inside it
    grid:                                 # every combination, first key slowest
      loss.beta: [1, 2, 4, 6, 8, 16]
      seed: [0, 1, 2]
    train: [train.steps=30000]            # overrides for every point
    eval: [eval.metrics=beta_vae,mig]     # settings for the evaluation of every point
    pack: 6                               # points trained together in one process (default 1)

Point names come from the grid values (`beta4_seed1`), so they are stable across re-expansions.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from .config import ConfigError
from .experiment import Config, from_sources


@dataclass
class Sweep:
    path: Path
    base: str
    out_dir: Path
    grid: dict[str, list]
    train: list[str]
    eval: list[str]
    pack: int = 1

    @classmethod
    def load(cls, path: str | Path) -> "Sweep":
        path = Path(path)
        directory = path if path.is_dir() else None
        if directory:
            path = directory / "sweep.yaml"
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read sweep file {path}: {e}") from None
        unknown = set(data) - {"base", "out_dir", "grid", "train", "eval", "pack"}
        if unknown:
            raise ConfigError(f"unknown sweep key '{sorted(unknown)[0]}' (in {path})")
        grid = data.get("grid") or {}
        if not grid or not all(isinstance(v, list) and v for v in grid.values()):
            raise ConfigError(f"grid: expected a mapping of keys to non-empty lists (in {path})")
        pack = data.get("pack", 1)
        if not isinstance(pack, int) or isinstance(pack, bool) or pack < 1:
            raise ConfigError(f"pack: expected a positive number of points per process, got {pack!r} (in {path})")
        out_dir = directory or Path(data.get("out_dir", "runs/sweep"))
        return cls(path, data.get("base", ""), out_dir, grid,
                   list(data.get("train") or []), list(data.get("eval") or []), pack)

    @property
    def points(self) -> list[dict]:
        return [dict(zip(self.grid, values)) for values in itertools.product(*self.grid.values())]

    def name(self, point: dict) -> str:
        return "_".join(f"{key.split('.')[-1]}{value}" for key, value in point.items())

    def run_dir(self, point: dict) -> Path:
        return self.out_dir / self.name(point)

    def train_overrides(self, point: dict) -> list[str]:
        return [*self.train, *(f"{k}={v}" for k, v in point.items()), f"run_dir={self.run_dir(point)}"]

    def point(self, index: int) -> dict:
        points = self.points
        if not 0 <= index < len(points):
            raise ConfigError(f"point {index} does not exist: {self.path} has {len(points)} (0..{len(points) - 1})")
        point = points[index]
        from_sources(self.base or None, self.train_overrides(point) + self.eval)  # fail early on a bad key
        return point

    def config(self, point: dict, evaluation: bool = False) -> Config:
        """The point's training config, or (evaluation) the settings its evaluation runs with."""
        return from_sources(self.base or None, self.train_overrides(point) + (self.eval if evaluation else []))

    def pack_points(self, pack: int, index: int | None) -> list[dict]:
        """Points index·pack .. index·pack+pack-1, or all of them (index None)."""
        points = self.points
        if index is None:
            return points
        count = math.ceil(len(points) / pack)
        if not 0 <= index < count:
            raise ConfigError(f"pack {index} does not exist: {len(points)} points in packs of {pack} make {count} "
                              f"(0..{count - 1})")
        return points[index * pack:(index + 1) * pack]

    def copy_into_out_dir(self) -> None:
        """sweep.yaml beside the runs, for the report."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.path.resolve() != (self.out_dir / "sweep.yaml").resolve():
            (self.out_dir / "sweep.yaml").write_text(self.path.read_text())
