"""The networks `model.arch` names, for 64x64 images (model_config.py registers them):
- "fc": Higgins et al. 2017, dSprites: encoder FC 1200-1200 (ReLU), decoder FC 1200-1200-1200
  (tanh) to 4096 pixels.
- "conv64": Burgess et al. 2018: 4 conv layers of 32 channels (4x4, stride 2), FC 256-256, and a
  transposed mirror for the decoder.
- "conv64_deep": a deeper conv net for 3-channel images such as CelebA (32-32-64-64 conv, then a
  4x4 conv to 256; the widely used layout of the 1Konny/Beta-VAE CelebA model).
- "dlib_conv": disentanglement_lib's `conv_encoder` / `deconv_decoder` (methods/shared/
  architectures.py), the network of its unsupervised study, layer for layer: 32-32-64-64 convolutions
  (4x4, 4x4, then 2x2 kernels, as in its code), dense 256; the decoder dense 256-1024 and four 4x4
  transposed convolutions. TensorFlow's "same" padding is padding 1 for the 4x4 kernels and 0 for
  the 2x2 ones; its separate means and log-variance layers are one layer of twice the width here.
  TensorFlow's initialisers differ from torch's defaults, kept here.

Every encoder returns (mean, log-variance); the decoder returns logits (Bernoulli) or means
(Gaussian) with the image's shape.
"""

from __future__ import annotations

from torch import nn

from .model_config import IMAGE_SIZE


def fc(latents: int, channels: int) -> tuple[nn.Module, nn.Module]:
    pixels = channels * IMAGE_SIZE * IMAGE_SIZE
    encoder = nn.Sequential(
        nn.Flatten(),
        nn.Linear(pixels, 1200), nn.ReLU(),
        nn.Linear(1200, 1200), nn.ReLU(),
        nn.Linear(1200, 2 * latents),
    )
    decoder = nn.Sequential(
        nn.Linear(latents, 1200), nn.Tanh(),
        nn.Linear(1200, 1200), nn.Tanh(),
        nn.Linear(1200, 1200), nn.Tanh(),
        nn.Linear(1200, pixels),
        nn.Unflatten(1, (channels, IMAGE_SIZE, IMAGE_SIZE)),
    )
    return encoder, decoder


def conv_stack(widths: list[int], transpose: bool) -> list[nn.Module]:
    """4x4 stride-2 convolutions (or their transposes) with ReLU between them."""
    conv = nn.ConvTranspose2d if transpose else nn.Conv2d
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(conv(a, b, 4, stride=2, padding=1))
        if not (transpose and i == len(widths) - 2):  # no activation on the decoder's output
            layers.append(nn.ReLU())
    return layers


def conv64(latents: int, channels: int) -> tuple[nn.Module, nn.Module]:
    encoder = nn.Sequential(
        *conv_stack([channels, 32, 32, 32, 32], transpose=False),  # 64 -> 4
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 256), nn.ReLU(),
        nn.Linear(256, 256), nn.ReLU(),
        nn.Linear(256, 2 * latents),
    )
    decoder = nn.Sequential(
        nn.Linear(latents, 256), nn.ReLU(),
        nn.Linear(256, 256), nn.ReLU(),
        nn.Linear(256, 32 * 4 * 4), nn.ReLU(),
        nn.Unflatten(1, (32, 4, 4)),
        *conv_stack([32, 32, 32, 32, channels], transpose=True),
    )
    return encoder, decoder


def conv64_deep(latents: int, channels: int) -> tuple[nn.Module, nn.Module]:
    encoder = nn.Sequential(
        *conv_stack([channels, 32, 32, 64, 64], transpose=False),  # 64 -> 4
        nn.Conv2d(64, 256, 4), nn.ReLU(),  # 4 -> 1
        nn.Flatten(),
        nn.Linear(256, 2 * latents),
    )
    decoder = nn.Sequential(
        nn.Linear(latents, 256), nn.ReLU(),
        nn.Unflatten(1, (256, 1, 1)),
        nn.ConvTranspose2d(256, 64, 4), nn.ReLU(),  # 1 -> 4
        *conv_stack([64, 64, 32, 32, channels], transpose=True),
    )
    return encoder, decoder


def dlib_conv(latents: int, channels: int) -> tuple[nn.Module, nn.Module]:
    encoder = nn.Sequential(
        *conv_stack([channels, 32, 32], transpose=False),  # 64 -> 16
        nn.Conv2d(32, 64, 2, stride=2), nn.ReLU(),  # 16 -> 8
        nn.Conv2d(64, 64, 2, stride=2), nn.ReLU(),  # 8 -> 4
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 256), nn.ReLU(),
        nn.Linear(256, 2 * latents),
    )
    decoder = nn.Sequential(
        nn.Linear(latents, 256), nn.ReLU(),
        nn.Linear(256, 64 * 4 * 4), nn.ReLU(),
        nn.Unflatten(1, (64, 4, 4)),
        *conv_stack([64, 64, 32, 32, channels], transpose=True),
    )
    return encoder, decoder
