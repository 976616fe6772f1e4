"""The model card of an export (its README.md, the Hub's model card): what was trained, on what,
how, and how it scored at which sizes.

Every export carries one (training, `python -m betavae_dist.export`, `save_pretrained`), with its
evaluation.json beside it when the model was evaluated; `refresh` writes both again when an
evaluation comes later (`evaluate`, a sweep's pack). The metadata is the Hub's: library, tags and
a model-index with every score; the text repeats them as tables for people.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from . import CONFIG, EVALUATION

LIBRARY, TAGS = "betavae-dist", ["beta-vae", "disentanglement"]
CARD = "README.md"


def scores(evaluation: dict) -> dict[str, float]:
    """The metric results of an evaluation.json: numbers named metric.result, without timings."""
    return {key: value for key, value in evaluation.items()
            if "." in key and isinstance(value, (int, float)) and not isinstance(value, bool)
            and not key.startswith("encode.") and not key.endswith(".seconds")}


def data_description(data: dict) -> str:
    """What the model was trained on: the factor data set, or the shards (and how they were sized)."""
    if data.get("source") == "webdataset":
        resize = ", resized and centre-cropped to 64x64" if data.get("resize") == "crop" else ""
        return f"WebDataset shards {data.get('shards')}{resize}"
    return data.get("name", "unknown") + (f" ({data['path']})" if data.get("path") else "")


def evaluated_with(evaluation: dict) -> list[str]:
    """The sizes and seed each scored metric used (evaluation.json's `eval` record)."""
    settings = evaluation.get("eval") or {}
    metrics = [m for m in str(settings.get("metrics", "")).split(",") if m]
    rows = [f"| eval.seed | {settings.get('seed')} |", f"| eval.factors | {settings.get('factors')} |"]
    rows += [f"| eval.{m} | {', '.join(f'{k} {v}' for k, v in settings[m].items())} |" for m in metrics
             if isinstance(settings.get(m), dict)]
    return rows


def model_card(config: dict, evaluation: dict | None) -> ModelCard:
    """`config`: the export's config.json (its `training_config` when it was trained here)."""
    model, training = config.get("model", {}), config.get("training_config") or {}
    loss, data, train = training.get("loss", {}), training.get("data", {}), training.get("train", {})
    name = f"β-VAE {model.get('arch', '?')}, {model.get('latents', '?')} latents"
    results = scores(evaluation or {})
    dataset = data_description(data) if data else "unknown"
    card_data = ModelCardData(
        library_name=LIBRARY, tags=TAGS, model_name=name,
        eval_results=[EvalResult(task_type="representation-learning", dataset_type=data.get("name", "unknown"),
                                 dataset_name=dataset, metric_type=key, metric_value=value)
                      for key, value in results.items()] or None)
    rows = {"architecture": model.get("arch"), "latents": model.get("latents"), "channels": model.get("channels"),
            "likelihood": config.get("likelihood"), **{f"loss.{k}": v for k, v in loss.items()}, "data set": dataset,
            "steps": train.get("steps"), "batch size": train.get("batch_size"),
            "learning rate": training.get("optim", {}).get("lr"), "seed": training.get("seed")}
    lines = [f"# {name}", "", "Trained with betavae-dist (distributed β-VAE training); load it without pickle: "
             "`BetaVAE.from_pretrained(path_or_repo_id)`, or with safetensors and torch alone from config.json's "
             "`layout`.", "", "| setting | value |", "|---|---|",
             *(f"| {k} | {v} |" for k, v in rows.items() if v is not None)]
    if results:
        scored_on = evaluation.get("data") or data.get("name", "?")
        lines += ["", f"Scores on {scored_on} (evaluation.json):", "", "| score | value |", "|---|---|",
                  *(f"| {k} | {v:.4g} |" for k, v in results.items()),
                  "", "| evaluated with | |", "|---|---|", *evaluated_with(evaluation)]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")


def refresh(export: Path, evaluation: dict) -> None:
    """An export's evaluation.json and card, written again for a new evaluation."""
    config = json.loads((export / CONFIG).read_text())
    for name, text in ((EVALUATION, json.dumps(evaluation, indent=2)), (CARD, str(model_card(config, evaluation)))):
        tmp = export / f".tmp-{name}"
        tmp.write_text(text)
        os.replace(tmp, export / name)
