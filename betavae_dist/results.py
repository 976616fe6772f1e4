"""evaluation.json: what was scored, how, and the scores; an export beside it gets a copy and a
model card that shows them (export/card.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .export import CONFIG, EVALUATION
from .export.card import refresh

if TYPE_CHECKING:
    from .experiment import Config


def record(model: Path | str, ranks: int, cfg: Config, results: dict) -> dict:
    """The evaluation.json of `results`: the model, the ranks, the data set and every eval setting."""
    return {"model": str(model), "ranks": ranks, "data": cfg.data.name, "eval": dataclasses.asdict(cfg.eval), **results}


def write_results(out: Path, model: Path | str, ranks: int, cfg: Config, results: dict) -> None:
    """Write `out`; where it lies in an export or in a run directory with one, that export's copy
    and card too."""
    out.parent.mkdir(parents=True, exist_ok=True)
    evaluation = record(model, ranks, cfg, results)
    out.write_text(json.dumps(evaluation, indent=2))
    print(f"wrote {out}")
    export = next((d for d in (out.parent, out.parent / "export") if (d / CONFIG).is_file()), None)
    if export is not None and out.name == EVALUATION:
        refresh(export, evaluation)
