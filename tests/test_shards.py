import io
import json
import sys

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from betavae_dist.data import dsprites
from betavae_dist.data.shards import Preprocessing, ShardError, preprocess_file, read_celeba_attributes
from helpers import make_celeba, run

def write(kind, *paths, extra=()):
    return run([sys.executable, "-m", "betavae_dist.data.shards", kind, *map(str, paths), "--workers", "2", *extra])


def samples(shard_dir):
    urls = sorted(str(p) for p in shard_dir.glob("shard-*.tar"))
    return list(wds.WebDataset(urls, shardshuffle=False))


@pytest.mark.integration
def test_celeba_layout_to_split_shards_with_attributes(tmp_path):
    root = make_celeba(tmp_path / "celeba")
    write("celeba", root, tmp_path / "out", extra=["--maxcount", "5"])
    for split, n in (("train", 28), ("valid", 4), ("test", 4)):
        manifest = json.loads((tmp_path / "out" / split / "manifest.json").read_text())
        assert manifest["total"] == n == sum(s["samples"] for s in manifest["shards"])
        assert manifest["image"] == {"size": 64, "channels": 3, "extension": "png"}
        assert manifest["preprocessing"]["crop"] == 148
    train = samples(tmp_path / "out" / "train")
    assert [s["__key__"] for s in train] == [f"{i:06d}" for i in range(1, 29)]
    meta = json.loads(train[0]["json"])
    assert meta["split"] == "train" and len(meta["attributes"]) == 40
    assert set(meta["attributes"].values()) <= {-1, 1}
    assert np.asarray(Image.open(io.BytesIO(train[0]["png"]))).shape == (64, 64, 3)


@pytest.mark.integration
def test_rewriting_gives_byte_identical_shards(tmp_path):
    root = make_celeba(tmp_path / "celeba", 12, 1, 1)
    write("celeba", root, tmp_path / "a", extra=["--maxcount", "5"])
    write("celeba", root, tmp_path / "b", extra=["--maxcount", "5", "--workers", "1"])
    for name in ("shard-000000.tar", "shard-000001.tar", "shard-000002.tar", "manifest.json"):
        a, b = (tmp_path / d / "train" / name for d in ("a", "b"))
        assert a.read_bytes() == b.read_bytes(), name


@pytest.mark.integration
def test_folder_of_mixed_images_jpeg_and_byte_limit(tmp_path):
    src = tmp_path / "imgs"
    (src / "nested" / "deeper").mkdir(parents=True)
    Image.new("RGBA", (100, 80), (255, 0, 0, 128)).save(src / "a.png")
    Image.new("L", (30, 50), 200).save(src / "nested" / "b.v2.jpg")
    Image.new("RGB", (64, 64), (0, 0, 255)).save(src / "nested" / "deeper" / "c.webp")
    (src / "notes.txt").write_text("not an image")
    write("folder", src, tmp_path / "out", extra=["--format", "jpeg", "--quality", "80", "--maxsize", "600"])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["total"] == 3 and len(manifest["shards"]) >= 2  # the byte limit split them
    got = samples(tmp_path / "out")
    assert sorted(s["__key__"] for s in got) == ["a", "nested/b_v2", "nested/deeper/c"]
    assert all(np.asarray(Image.open(io.BytesIO(s["jpg"]))).shape == (64, 64, 3) for s in got)


@pytest.mark.integration
def test_dsprites_shards_round_trip_raw(tmp_path):
    write("dsprites", tmp_path / "ds", extra=["--limit", "50", "--format", "raw", "--maxcount", "20"])
    got = samples(tmp_path / "ds")
    assert len(got) == 50
    image = np.load(io.BytesIO(got[7]["npy"]))
    np.testing.assert_array_equal(image, dsprites.render(dsprites.DSprites.index_to_factors(np.array([7])))[0] * 255)
    assert json.loads(got[7]["json"])["factors"]["posY"] == 7


@pytest.mark.integration
def test_bad_input_is_named(tmp_path):
    root = make_celeba(tmp_path / "celeba", 3, 1, 1)
    attr = root / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    attr.write_text("\n".join(lines[:3] + [lines[3].replace(" 1", " 2", 1)] + lines[4:]) + "\n")
    with pytest.raises(ShardError, match=f"{attr}:4: expected a file name and 40 values"):
        read_celeba_attributes(attr)
    attr.write_text("\n".join(lines) + "\n")
    (root / "img_align_celeba" / "000002.jpg").write_bytes(b"not a jpeg")
    proc = run([sys.executable, "-m", "betavae_dist.data.shards", "celeba", str(root), str(tmp_path / "o")], check=False)
    assert proc.returncode == 1 and f"cannot read image {root / 'img_align_celeba' / '000002.jpg'}" in proc.stderr
    # Usage errors exit 2, as everywhere else (the README's exit codes).
    proc = run([sys.executable, "-m", "betavae_dist.data.shards", "dsprites", str(tmp_path / "d"), "--size", "32"],
               check=False)
    assert proc.returncode == 2 and "dsprites images are 64x64: --size 64 and no --crop" in proc.stderr


@pytest.mark.integration
def test_colliding_keys_are_refused_naming_both_files(tmp_path):
    for names in (("dup.jpg", "dup.png"), ("photo.v2.final.JPG", "photo_v2.final.jpg")):
        src = tmp_path / names[0]
        src.mkdir()
        for name in names:
            Image.new("RGB", (8, 8)).save(src / name, format="JPEG" if name.lower().endswith("jpg") else "PNG")
        proc = run([sys.executable, "-m", "betavae_dist.data.shards", "folder", str(src), str(tmp_path / "out"),
                    "--workers", "1"], check=False)
        first, second = sorted(src / name for name in names)
        assert proc.returncode == 1
        assert f"{first} and {second} would both be sample" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.integration
def test_other_files_are_listed_and_bmp_tif_are_images(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (8, 8)).save(src / "a.bmp")
    Image.new("RGB", (8, 8)).save(src / "b.tif")
    (src / "notes.txt").write_text("x")
    (src / "README").write_text("x")
    proc = write("folder", src, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["total"] == 2
    assert "skipped 2 file(s) that are not images (.txt: 1, no suffix: 1)" in proc.stderr


@pytest.mark.integration
def test_skip_lists_bad_images_and_a_failed_run_keeps_the_old_shards(tmp_path):
    root = make_celeba(tmp_path / "celeba", 6, 1, 1)
    out = tmp_path / "out"
    write("celeba", root, out)
    before = {p.name: p.read_bytes() for p in (out / "train").iterdir()}
    bad = root / "img_align_celeba" / "000002.jpg"
    bad.write_bytes(b"not a jpeg")
    proc = run([sys.executable, "-m", "betavae_dist.data.shards", "celeba", str(root), str(out), "--workers", "2"],
               check=False)
    assert proc.returncode == 1
    assert {p.name: p.read_bytes() for p in (out / "train").iterdir()} == before  # old shards and manifest intact
    write("celeba", root, out, extra=["--on-error", "skip"])
    manifest = json.loads((out / "train" / "manifest.json").read_text())
    assert manifest["total"] == 5 and manifest["skipped"] == 1
    skipped = json.loads((out / "train" / "skipped.json").read_text())
    assert [s["file"] for s in skipped] == [str(bad)] and "cannot read image" in skipped[0]["reason"]
    assert not (out / "train" / ".tmp-shards").exists()


def test_a_photo_stored_rotated_is_written_upright(tmp_path):
    upright = np.zeros((30, 20, 3), np.uint8)
    upright[:10] = 255  # white on top: a portrait 20 wide, 30 high
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # what a phone writes, lying on its side
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: turn 90° clockwise to display
    stored.save(tmp_path / "phone.png", exif=exif)
    image = preprocess_file(tmp_path / "phone.png", Preprocessing(size=30, crop=0, mode="L", format="png", quality=95))
    assert image.shape == (30, 30) and image[:5].mean() > 200 and image[-5:].mean() < 50  # white stays on top
