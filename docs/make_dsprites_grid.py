"""Regenerate docs/dsprites_grid.png: one row per shape and scale (0.5, 1.0); columns sweep the
orientation (0..2π in 8 steps), then the two opposite corners of the position grid."""

from pathlib import Path

import numpy as np
import torch

from betavae_dist.data.dsprites import render
from betavae_dist.visualize import save_grid

rows = []
for shape in range(3):
    for scale in (0, 5):
        orientations = [[0, shape, scale, o, 16, 16] for o in range(0, 40, 5)] + [[0, shape, scale, 39, 16, 16]]
        corners = [[0, shape, scale, 0, 0, 0], [0, shape, scale, 0, 31, 31]]
        rows.append(render(np.array(orientations + corners)))
grid = torch.from_numpy(np.stack(rows)).float().unsqueeze(2)
save_grid(grid, Path(__file__).with_name("dsprites_grid.png"))
