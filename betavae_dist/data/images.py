"""One image brought to what a model takes: upright, in the model's mode, at its size. The shard
writer (shards.py) applies it to files at write time, `decode` to a shard sample's image member as
the stream (stream.py) reads it, so a photo gives the same pixels on either path.

- Upright: the EXIF orientation is applied (phones store photos rotated).
- Mode: alpha is dropped (RGBA -> RGB, LA -> L, as torchvision's loader does), CMYK and palette
  images become RGB, 16-bit grey keeps its top 8 bits (Pillow's own conversion would clip it to
  white), and grey becomes RGB or RGB grey (ITU-R 601 luma) when the model's channels say so.
- Size: the largest centred square (or a `crop` x `crop` one) resized to `size` x `size` with
  Pillow's bicubic filter: for a photo, its short side resized and the rest centre-cropped.
"""

from __future__ import annotations

import io

import numpy as np
import pyspng
from PIL import Image, ImageOps, UnidentifiedImageError

MODES = {1: "L", 3: "RGB"}  # a model's channels -> the Pillow mode of its images
GREY = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
SIXTEEN_BIT = {"I", "I;16", "I;16L", "I;16B", "I;16N"}
IMAGE_KEYS = ("png", "jpg", "jpeg", "npy", "webp")  # a shard sample's image member
PIL_FORMATS = {"png": ["PNG"], "jpg": ["JPEG"], "jpeg": ["JPEG"], "webp": ["WEBP"]}


def channels_of(image: Image.Image) -> int:
    """The channels the image holds once its alpha is dropped: 1 (grey) or 3 (colour)."""
    return 1 if image.mode in GREY else 3


def upright_in_mode(image: Image.Image, mode: str) -> Image.Image:
    """The image turned upright and converted to `mode` ("L" or "RGB")."""
    image = ImageOps.exif_transpose(image)
    if image.mode in SIXTEEN_BIT:  # Pillow's convert("L") clips these at 255: keep the top 8 bits
        image = Image.fromarray((np.clip(np.asarray(image), 0, 65535) >> 8).astype(np.uint8), "L")
    return image if image.mode == mode else image.convert(mode)


def centre_square(image: Image.Image, size: int, crop: int = 0) -> Image.Image:
    """The centred `crop` x `crop` square (0: the largest), resized to `size` x `size`."""
    w, h = image.size
    side = min(crop or min(w, h), w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return square if side == size else square.resize((size, size), Image.BICUBIC)


def prepare(image: Image.Image, mode: str, size: int | None, crop: int = 0) -> np.ndarray:
    """Upright, in `mode`, and (unless `size` is None) centre-cropped and resized: (H, W) or (H, W, 3) uint8."""
    image = upright_in_mode(image, mode)
    return np.asarray(image if size is None else centre_square(image, size, crop))


def decode(sample: dict, shape: tuple[int, int, int] | None, resize: bool = False,
           expected_by: str = "the manifest says") -> np.ndarray:
    """A sample's image as (C, H, W) uint8: upright and in `shape`'s mode (images.py), brought to
    `shape`'s size where `resize` (else checked against it). With no `shape` (the index), in its
    own channels and size. Our own shards' PNGs take libspng's fast path; anything else Pillow's."""
    key = next((k for k in IMAGE_KEYS if k in sample), None)
    if key is None:
        raise ValueError(f"no image in the sample (it has {sorted(k for k in sample if not k.startswith('__'))})")
    data, array, failed = sample[key], None, None
    if key == "npy":
        array = np.load(io.BytesIO(data), allow_pickle=False)
    elif key == "png" and b"eXIf" not in data:  # an EXIF orientation needs Pillow
        try:
            array = pyspng.load(data)  # libspng: 1.6x faster than Pillow's PNG decoder here (docs/benchmarks.md)
        except RuntimeError as e:  # e.g. grey with alpha, which libspng cannot size: Pillow reads it
            failed = str(e)
    if array is not None and array.dtype == np.uint8 and array.ndim in (2, 3):
        image = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        if image.shape == shape or (shape is None and image.shape[0] in MODES):
            return image  # already what the model takes
    try:
        image = _pillow(array if key == "npy" else data, key, shape, resize)
    except UnidentifiedImageError:
        raise ValueError(failed or f"not a {key} image") from None
    if shape is not None and image.shape != shape:
        raise ValueError(f"image of shape {image.shape}, {expected_by} {shape}"
                         f"{'' if resize else ' (data.resize=crop brings any size to it)'}")
    return image


def _pillow(data: bytes | np.ndarray, key: str, shape: tuple[int, int, int] | None, resize: bool) -> np.ndarray:
    """The slow path of `decode`: any mode, EXIF orientation, any size."""
    try:
        opened = Image.fromarray(data) if isinstance(data, np.ndarray) else Image.open(io.BytesIO(data),
                                                                                         formats=PIL_FORMATS[key])
    except TypeError:
        raise ValueError(f"{data.dtype} pixels of shape {data.shape}: not an image") from None
    with opened as img:
        mode = MODES[shape[0] if shape else channels_of(img)]
        image = prepare(img, mode, shape[1] if shape and resize else None)
    return image[None] if image.ndim == 2 else image.transpose(2, 0, 1)
