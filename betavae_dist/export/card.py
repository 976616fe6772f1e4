"""The Hub model card of an export: what was trained, how, and how it scored.

The metadata is the Hub's: library, tags and, when the export was evaluated (its evaluation.json),
a model-index with every score; the text repeats them as tables for people.
"""

from __future__ import annotations

from huggingface_hub import EvalResult, ModelCard, ModelCardData

LIBRARY, TAGS = "betavae-dist", ["beta-vae", "disentanglement"]


def scores(evaluation: dict) -> dict[str, float]:
    """The metric results of an evaluation.json: numbers named metric.result, without timings."""
    return {key: value for key, value in evaluation.items()
            if "." in key and isinstance(value, (int, float)) and not isinstance(value, bool)
            and not key.startswith("encode.") and not key.endswith(".seconds")}


def model_card(config: dict, evaluation: dict | None) -> ModelCard:
    """`config`: the export's config.json (its `training_config` when it was trained here)."""
    model, training = config.get("model", {}), config.get("training_config") or {}
    loss, data, train = training.get("loss", {}), training.get("data", {}), training.get("train", {})
    name = f"β-VAE {model.get('arch', '?')}, {model.get('latents', '?')} latents"
    results = scores(evaluation or {})
    dataset = data.get("name", "unknown")
    card_data = ModelCardData(
        library_name=LIBRARY, tags=TAGS, model_name=name,
        eval_results=[EvalResult(task_type="representation-learning", dataset_type=dataset, dataset_name=dataset,
                                 metric_type=key, metric_value=value) for key, value in results.items()] or None)
    rows = {"architecture": model.get("arch"), "latents": model.get("latents"), "channels": model.get("channels"),
            **{f"loss.{k}": v for k, v in loss.items()}, "data set": data.get("name"), "steps": train.get("steps"),
            "batch size": train.get("batch_size"), "seed": training.get("seed")}
    lines = [f"# {name}", "", "Trained with betavae-dist (distributed β-VAE training); load it without pickle: "
             "`BetaVAE.from_pretrained(path_or_repo_id)`.", "",
             "| setting | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows.items() if v is not None)]
    if results:
        lines += ["", "| score | value |", "|---|---|", *(f"| {k} | {v:.4g} |" for k, v in results.items())]
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n")
