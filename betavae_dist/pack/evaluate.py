"""The metrics of a pack's K trained models, computed together: each distinct image of the factor
dataset is rendered once and encoded by all K encoders (one vmapped pass on a GPU; on a CPU, where
that pass is slower, one plain pass per model), and its K codes are
kept side by side (a CodeTable of K·latents columns); each point's metrics then read its own
columns, and the fits of all K models run together. Each point's evaluation.json is the one
`betavae_dist.evaluate` writes for its export, except that `encode.seconds` is the whole pack's,
shared by its `encode.models` models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

import torch
from rich.progress import Progress

from ..data import build_dataset
from ..metrics import score, track_encoding
from ..data.dataset import grid_index
from ..metrics.codes import CodeTable, image_noise
from ..models import BetaVAE
from ..results import write_results
from ..rundir import RunDir
from .model import PackedVAE

if TYPE_CHECKING:
    from ..experiment import Config


def evaluate_pack(cfgs: list[Config], exports: list[Path], device: torch.device | None = None,
                  progress: Progress | None = None) -> list[dict]:
    """Score the exported models `exports` (one pack: same architecture and eval settings) with the
    settings of `cfgs`; writes EXPORT/../evaluation.json for each and returns the results."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    progress = progress or Progress(disable=True)
    model = PackedVAE(cfgs, device, [BetaVAE.from_pretrained(path).state_dict() for path in exports])
    dataset, eval_cfg, d = build_dataset(cfgs[0].data), cfgs[0].eval, model.latents

    plain = [model.point_model(k) for k in range(model.size)]
    if device.type == "cuda":  # one vmapped pass for the K encoders: where a pack gains
        encode_means = model.encode_means
    else:  # on a CPU that pass (a grouped convolution) took 6x as long as K plain ones (docs/benchmarks.md)
        encode_means = lambda x: torch.stack([m.encode(x.contiguous(memory_format=m.memory_format))[0] for m in plain])

    def representation_of(representation: str):
        @torch.no_grad()
        def represent(factors):  # (n, K·latents): point k's codes in columns k·d .. k·d+d-1
            x = torch.from_numpy(dataset.images(factors)).to(device)
            if representation == "mean":
                codes = encode_means(x).float()
            else:  # sampled: each point's own draw, with the ε a solo evaluation of the same image uses
                eps = torch.from_numpy(image_noise(grid_index(factors, dataset.factor_sizes), d, eval_cfg.seed)).to(device)
                codes = torch.stack([mean.float() + torch.exp(0.5 * logvar.float()) * eps
                                     for mean, logvar in (m.encode(x.contiguous(memory_format=m.memory_format))
                                                          for m in plain)])
            return codes.permute(1, 0, 2).reshape(len(factors), -1).cpu().numpy()
        return represent

    columns = [slice(k * d, (k + 1) * d) for k in range(len(cfgs))]
    results = [{} for _ in cfgs]
    for representation in eval_cfg.representations:
        codes = CodeTable(representation_of(representation), dataset.factor_sizes, None, eval_cfg.batch_size,
                          **track_encoding(progress, f"images encoded ({model.size} models"
                                           + (")" if representation == "mean" else f", {representation})")))
        scored = score(codes, dataset, [cfg.eval for cfg in cfgs], progress, columns=columns)
        prefix = "" if representation == "mean" else f"{representation}."
        shared = {"encode.seconds": round(codes.seconds, 2), "encode.models": model.size}
        for result, point in zip(results, scored):
            result.update({f"{prefix}{k}": v for k, v in {**point, **shared}.items()})
    for cfg, export, result in zip(cfgs, exports, results):
        write_results(RunDir(Path(export).parent).evaluation, export, 1, cfg, result)
    return results
