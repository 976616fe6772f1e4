"""Shards written by anything else, of any image size and mode: indexed, brought to the model's
size by `data.resize=crop` exactly as the project's shard writer would, the same on 1 and 2 ranks;
refused in one line without it. webdataset's wids index as the manifest."""

import io
import json

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from betavae_dist.config import ConfigError
from betavae_dist.data import index
from betavae_dist.data.shards import Preprocessing, preprocess_file
from betavae_dist.data.stream import StreamError, decode
from betavae_dist.experiment import from_sources
from helpers import in_process, plain_webdataset, shard_stream, train_here

EXIF_ORIENTATION = 0x0112


def photo(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    """A picture with a bright left third, so that a rotation shows; `size` is width x height."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 120, (size[1], size[0], 3), np.uint8)
    pixels[:, : size[0] // 3] = 250
    image = Image.fromarray(pixels)
    if mode == "I;16":
        return Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)
    return image.convert(mode)


def encoded(image: Image.Image, fmt: str, rotated: bool = False) -> bytes:
    """The file's bytes; `rotated`: stored turned a quarter, with the EXIF orientation (6) that turns it back."""
    buffer = io.BytesIO()
    if rotated:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = 6
        image.transpose(Image.Transpose.ROTATE_90).save(buffer, format=fmt, exif=exif)
    else:
        image.save(buffer, format=fmt)
    return buffer.getvalue()


# (name, mode, width x height, format, stored rotated): every kind of file a user's set holds.
KINDS = [("rgb128", "RGB", (128, 128), "PNG", False), ("celeba", "RGB", (178, 218), "JPEG", False),
         ("grey", "L", (80, 96), "PNG", False), ("rgba", "RGBA", (80, 96), "PNG", False),
         ("la", "LA", (80, 96), "PNG", False), ("cmyk", "CMYK", (80, 96), "JPEG", False),
         ("palette", "P", (80, 96), "PNG", False), ("grey16", "I;16", (80, 96), "PNG", False),
         ("exif", "RGB", (80, 96), "JPEG", True)]


def foreign_shards(directory, kinds, per_kind=4, per_shard=6):
    """ShardWriter shards of the given kinds (written as their files' bytes), and each sample's file."""
    directory.mkdir(parents=True)
    files = {}
    with wds.ShardWriter(str(directory / "set-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
        for k, (name, mode, size, fmt, rotated) in enumerate(kinds):
            for i in range(per_kind):
                key, ext = f"{name}_{i}", "png" if fmt == "PNG" else "jpg"
                data = encoded(photo(mode, size, 10 * k + i), fmt, rotated)
                (directory.parent / f"{key}.{ext}").write_bytes(data)
                files[key] = directory.parent / f"{key}.{ext}"
                sink.write({"__key__": key, ext: data, "json": {"i": i}})
    return directory, files


def stream_cfg(shards, *extra):
    return from_sources("configs/celeba_beta.yaml", [f"data.shards={shards}", "train.batch_size=4", "data.workers=0",
                                                     "data.shuffle_buffer=1", *extra])


def images_by_key(stream):
    out = {}
    for _, (images, keys, _) in zip(range(stream.batches_per_epoch), stream.keyed_micro_batches(0)):
        out.update(zip(keys, (images * 255).round().to(torch.uint8).numpy()))
    return out


@pytest.mark.parametrize("channels", [3, 1])
def test_any_size_and_mode_is_brought_to_the_model_as_the_writer_would(tmp_path, channels):
    shards, files = foreign_shards(tmp_path / "shards", KINDS)
    manifest = index.index(str(shards), say=lambda line: None, any_size=True)
    assert manifest["image"]["size"] is None and manifest["image"]["channels"] is None  # 1- and 3-channel files
    assert manifest["image"]["sizes"][:3] == ["128x128", "178x218", "80x96"]
    assert not list(shards.glob("*.partial"))

    with pytest.raises(ConfigError, match=r"^the shards hold images of other sizes \(128x128, 178x218, 80x96, "
                                          r"width x height\) but the networks take 64x64; data.resize=crop"):
        shard_stream(stream_cfg(shards, f"model.channels={channels}"), 1, 0)

    cfg = stream_cfg(shards, "data.resize=crop", f"model.channels={channels}")
    one = images_by_key(shard_stream(cfg, 1, 0))
    assert len(one) == 36
    writer = Preprocessing(size=64, crop=0, mode="L" if channels == 1 else "RGB")
    for key, image in one.items():
        expected = preprocess_file(files[key], writer)
        expected = expected[None] if expected.ndim == 2 else expected.transpose(2, 0, 1)
        assert image.shape == (channels, 64, 64) and np.abs(image.astype(int) - expected).max() <= 1, key

    # The same pixels for each sample on 2 ranks, each rank its own share.
    ranks = [images_by_key(shard_stream(cfg, 2, r)) for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])
    for key, image in {**ranks[0], **ranks[1]}.items():
        assert (image == one[key]).all(), key


def test_exif_orientation_and_modes_on_the_foreign_path():
    upright = photo("RGB", (80, 96), 0)
    stored = decode({"jpg": encoded(upright, "JPEG", rotated=True)}, None)
    assert stored.shape == (3, 96, 80)  # turned back: portrait, the bright third on the left
    assert stored[:, :, :20].mean() > 200 and stored[:, :, -20:].mean() < 130
    assert decode({"png": encoded(photo("LA", (64, 64), 0), "PNG")}, None).shape == (1, 64, 64)
    assert decode({"png": encoded(photo("RGBA", (64, 64), 0), "PNG")}, None).shape == (3, 64, 64)
    assert decode({"jpg": encoded(photo("CMYK", (64, 64), 0), "JPEG")}, (1, 64, 64)).shape == (1, 64, 64)


def test_a_mixed_set_trains_with_data_resize(tmp_path):
    shards, _ = foreign_shards(tmp_path / "shards", KINDS, per_kind=2)
    index.index(str(shards), say=lambda line: None, any_size=True)
    run = [f"data.shards={shards}", "train.batch_size=4", "train.steps=2", "data.workers=0", "data.shuffle_buffer=4"]
    refused = train_here(tmp_path / "off", *run, config="configs/celeba_beta.yaml", check=False)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].startswith(
        "betavae_dist.train: config error: the shards hold images of other sizes (128x128, 178x218, 80x96")
    train_here(tmp_path / "crop", *run, "data.resize=crop", config="configs/celeba_beta.yaml")
    assert (tmp_path / "crop" / "export" / "model.safetensors").is_file()


def test_index_without_any_size_refuses_in_one_line_and_leaves_no_partial(tmp_path):
    shards, _ = foreign_shards(tmp_path / "shards", KINDS[1:2])  # CelebA's own 178x218
    proc = in_process(index.main, [str(shards)])
    assert proc.returncode == 1 and proc.stderr.strip() == (
        f"index: error: {shards}: images are 178x218 (width x height); the stream reads square images (--any-size "
        "indexes images of any size and mode; train on them with data.resize=crop)")
    assert not list(shards.glob("manifest.json*"))
    proc = in_process(index.main, [str(shards), "--any-size"])
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == (
        "4 samples in 1 shards, jpg, 3-channel images of 178x218 (width x height): manifest written")


def test_a_wids_index_is_a_manifest(tmp_path):
    shards = plain_webdataset(tmp_path / "plain", shards=2, per_shard=4)
    entries = [{"url": f"celeba-00000{i}.tar", "nsamples": 4, "filesize": (shards / f"celeba-00000{i}.tar").stat().st_size}
               for i in range(2)]
    wids = shards / "index.json"
    wids.write_text(json.dumps({"__kind__": "wids-shard-index-v1", "wids_version": 1, "shardlist": entries}))
    stream = shard_stream(stream_cfg(wids), 1, 0)  # relative URLs are beside the index, as wids reads them
    assert stream.counts == [4, 4] and len(images_by_key(stream)) == 8
    brace = f"{shards}/celeba-{{000000..000001}}.tar"
    assert shard_stream(stream_cfg(brace, f"data.manifest={wids}"), 1, 0).counts == [4, 4]
    with pytest.raises(StreamError, match=rf"^shard {shards}/celeba-000002.tar does not exist$"):
        shard_stream(stream_cfg(f"{shards}/celeba-{{000000..000002}}.tar", f"data.manifest={wids}"), 1, 0)

    wids.write_text(json.dumps({"__kind__": "wids-shard-index-v1", "wids_version": 1}))
    with pytest.raises(StreamError, match=rf"^cannot read the shard manifest {wids} \(data.manifest\): it has no "
                                          r"'shardlist' entry \(neither our manifest nor a wids index\); "):
        shard_stream(stream_cfg(wids), 1, 0)
