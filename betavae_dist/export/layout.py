"""What an export says of its network, so that plain torch and safetensors can use it.

Format 2 names each layer with weights by its kind and place (`encoder.conv1`, `encoder.fc2`,
`decoder.deconv4`; the encoder's last layer `encoder.mean_logvar`, the decoder's `decoder.out`)
where format 1 had the index in an `nn.Sequential` (`encoder.13`); checkpoints keep the module's
own keys. config.json's `layout` lists every layer in order with torch's class name and its
arguments (`getattr(torch.nn, type)(**args)` rebuilds it), the tensors' names, the input the
encoder takes, how its output splits into mean and log-variance, and what the decoder gives.
"""

from __future__ import annotations

from torch import nn

KINDS = {nn.Conv2d: "conv", nn.ConvTranspose2d: "deconv", nn.Linear: "fc"}
LAST = {"encoder": "mean_logvar", "decoder": "out"}  # each part's last layer with weights
PARTS = tuple(LAST)
OUTPUTS = {"bernoulli": "the logits of each pixel's Bernoulli distribution (sigmoid gives the image in [0, 1])",
           "gaussian": "the mean of each pixel's Gaussian distribution (the image)"}


def layer_names(model: nn.Module) -> dict[str, str]:
    """Module prefix -> export name of each layer with weights: {"encoder.0": "encoder.conv1", ...}."""
    names = {}
    for part in PARTS:
        layers = getattr(model, part)
        weighted = [i for i, layer in enumerate(layers) if type(layer) in KINDS]
        counts: dict[str, int] = {}
        for i in weighted:
            kind = KINDS[type(layers[i])]
            counts[kind] = counts.get(kind, 0) + 1
            names[f"{part}.{i}"] = f"{part}.{LAST[part] if i == weighted[-1] else f'{kind}{counts[kind]}'}"
    return names


def _rename(key: str, names: dict[str, str]) -> str:
    prefix, _, tensor = key.rpartition(".")
    return f"{names.get(prefix, prefix)}.{tensor}"


def to_export(state: dict, model: nn.Module) -> dict:
    """A state dict with the module's keys -> format 2's names."""
    names = layer_names(model)
    return {_rename(k, names): v for k, v in state.items()}


def from_export(model: nn.Module, version: int):
    """The function from an export's tensor names (format `version`) to the module's keys."""
    if version == 1:
        return lambda key: key
    back = {name: prefix for prefix, name in layer_names(model).items()}
    return lambda key: _rename(key, back)


def _arguments(layer: nn.Module) -> dict:
    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
        return {"in_channels": layer.in_channels, "out_channels": layer.out_channels, "kernel_size": layer.kernel_size[0],
                "stride": layer.stride[0], "padding": layer.padding[0]}
    if isinstance(layer, nn.Linear):
        return {"in_features": layer.in_features, "out_features": layer.out_features}
    if isinstance(layer, nn.Flatten):
        return {"start_dim": layer.start_dim, "end_dim": layer.end_dim}
    if isinstance(layer, nn.Unflatten):
        return {"dim": layer.dim, "unflattened_size": list(layer.unflattened_size)}
    return {}  # activations


def describe(model: nn.Module, latents: int, channels: int, image_size: int, likelihood: str) -> dict:
    """config.json's `layout`."""
    names = layer_names(model)
    parts = {}
    for part in PARTS:
        layers = []
        for i, layer in enumerate(getattr(model, part)):
            entry = {"type": type(layer).__name__, "args": _arguments(layer)}
            if f"{part}.{i}" in names:
                entry["tensors"] = names[f"{part}.{i}"]  # .weight and .bias in model.safetensors
            layers.append(entry)
        parts[part] = {"layers": layers}
    parts["encoder"]["output"] = (f"(n, {2 * latents}): columns 0..{latents - 1} are the mean of q(z|x), columns "
                                  f"{latents}..{2 * latents - 1} its log-variance (natural log of σ²)")
    parts["decoder"]["input"] = f"(n, {latents}): a code z"
    parts["decoder"]["output"] = f"(n, {channels}, {image_size}, {image_size}): {OUTPUTS[likelihood]}"
    return {"input": {"shape": ["n", channels, image_size, image_size], "dtype": "float32", "range": [0.0, 1.0],
                      "order": "NCHW, channels first"},
            **parts}


def metadata(layout: dict, version: str) -> dict[str, str]:
    """The safetensors header's metadata (strings only): the same facts in short."""
    return {"format": version, "input": f"{layout['input']['shape']} float32 in [0, 1]",
            "encoder.mean_logvar": layout["encoder"]["output"], "decoder.out": layout["decoder"]["output"],
            "layout": "config.json's layout lists every layer"}
