"""Streaming from WebDataset shards: rank/worker splits, epochs, resume and bad input."""

import io
import json
import re
import sys

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from betavae_dist.experiment import from_sources
from betavae_dist.data.stream import StreamError, decode
from helpers import accelerate_cmd, in_process, make_celeba, plain_webdataset, shard_stream, run, train, train_here


@pytest.fixture(scope="module")
def celeba_shards(tmp_path_factory):
    root = make_celeba(tmp_path_factory.mktemp("celeba") / "celeba")
    out = root.parent / "shards"
    # 28 training samples in shards of 5, 5, 5, 5, 5 and 3: deliberately uneven.
    run([sys.executable, "-m", "betavae_dist.data.shards", "celeba", str(root), str(out), "--maxcount", "5", "--workers", "2"])
    return out / "train"


def urls(shard_dir):
    n = len(list(shard_dir.glob("shard-*.tar")))
    return f"{shard_dir}/shard-{{000000..{n - 1:06d}}}.tar"


def stream_cfg(shard_dir, *extra):
    return from_sources("configs/celeba_beta.yaml", [f"data.shards={urls(shard_dir)}", "train.batch_size=4",
                                                     "data.workers=2", "data.shuffle_buffer=4", *extra])


def keys_of(stream, start, n):
    it = stream.keyed_micro_batches(start)
    return [next(it)[1] for _ in range(n)]


@pytest.mark.distributed
def test_two_ranks_read_disjoint_equal_shares_covering_the_split_each_epoch(celeba_shards, tmp_path):
    out = tmp_path / "keys"
    run(accelerate_cmd(2, "-m", "betavae_dist.data.inspect_stream", "--config", "configs/celeba_beta.yaml", "--epochs", "2",
                       "--out", str(out), f"data.shards={urls(celeba_shards)}", "train.batch_size=4",
                       "data.workers=2", "data.shuffle_buffer=4"))
    ranks = [json.loads((out / f"rank_{r}.json").read_text())["epochs"] for r in (0, 1)]
    everything = {f"{i:06d}" for i in range(1, 29)}
    for epoch in range(2):
        batches = [ranks[r][epoch] for r in (0, 1)]
        assert len(batches[0]) == len(batches[1]) == 7  # 28 samples / (2 ranks x 2 per batch)
        seen = [[k for b in batches[r] for k in b] for r in (0, 1)]
        assert not set(seen[0]) & set(seen[1])
        assert sorted(seen[0] + seen[1]) == sorted(everything)  # each sample exactly once
    assert ranks[0][0] != ranks[0][1]  # a new order each epoch


@pytest.mark.integration
def test_epochs_are_deterministic_and_resume_continues_in_place(celeba_shards):
    cfg = stream_cfg(celeba_shards)
    a, b = shard_stream(cfg, 1, 0), shard_stream(cfg, 1, 0)
    assert a.steps_per_epoch == 7
    straight = keys_of(a, 0, 17)  # into the third epoch
    assert straight == keys_of(b, 0, 17)
    assert keys_of(shard_stream(cfg, 1, 0), 10, 7) == straight[10:17]


@pytest.mark.integration
def test_fewer_shards_than_ranks_times_workers_still_splits_evenly(celeba_shards):
    one_shard = f"{celeba_shards}/shard-000000.tar"
    cfg = from_sources("configs/celeba_beta.yaml", [f"data.shards={one_shard}", "train.batch_size=2", "data.workers=2"])
    streams = [shard_stream(cfg, 2, r) for r in (0, 1)]
    got = [keys_of(s, 0, s.batches_per_epoch) for s in streams]
    assert len(got[0]) == len(got[1]) == 2
    assert not {k for b in got[0] for k in b} & {k for b in got[1] for k in b}


def png_bytes(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_bad_shards(directory, bad):
    """Two shards of 4 samples; `bad` replaces sample (shard, index) with a broken one."""
    directory.mkdir()
    shards = []
    for s in range(2):
        name = f"shard-{s:06d}.tar"
        with wds.TarWriter(str(directory / name)) as sink:
            for i in range(4):
                image = Image.fromarray(np.full((64, 64, 3), 10 * i, np.uint8))
                sample = {"__key__": f"s{s}_{i}", "png": png_bytes(image), "json": b"{}"}
                sample = bad.get((s, i), lambda x: x)(sample)
                sink.write(sample)
        shards.append({"name": name, "samples": 4})
    (directory / "manifest.json").write_text(json.dumps({"total": 8, "image": {"size": 64, "channels": 3},
                                                         "shards": shards}))
    return f"{directory}/shard-{{000000..000001}}.tar"


def corrupt_image(sample):
    return {**sample, "png": b"\x89PNG garbage"}


def no_image(sample):
    return {"__key__": sample["__key__"], "json": b"{}"}


def read_all(url, *extra):
    cfg = from_sources("configs/celeba_beta.yaml", [f"data.shards={url}", "train.batch_size=2", "data.workers=0",
                                                    "data.shuffle_buffer=1", *extra])
    stream = shard_stream(cfg, 1, 0)
    batches = list(zip(range(stream.batches_per_epoch), stream.keyed_micro_batches(0)))
    return [b for _, b in batches]


@pytest.mark.parametrize("broken, message", [
    (corrupt_image, "shard .*shard-000001.tar, sample s1_2: pyspng: could not decode"),
    (no_image, "shard .*shard-000001.tar, sample s1_2: no image in the sample"),
])
def test_bad_sample_raise_names_shard_and_key_skip_counts_it(tmp_path, capfd, broken, message):
    url = write_bad_shards(tmp_path / "shards", {(1, 2): broken})
    with pytest.raises(StreamError, match=message):
        read_all(url)
    with pytest.raises(StreamError, match=message) as raised:  # from a DataLoader worker: its line, not its traceback
        read_all(url, "data.workers=1")
    assert "\n" not in str(raised.value) and "Caught" not in str(raised.value)
    batches = read_all(url, "data.on_error=skip", "data.max_skip_fraction=0.5")
    assert len(batches) == 4 and batches[-1][2] == 1  # still 4 batches; one sample skipped
    assert "s1_2" in capfd.readouterr().err


def test_truncated_and_missing_shards(tmp_path):
    url = write_bad_shards(tmp_path / "shards", {})
    shard = tmp_path / "shards" / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:3000])  # cut inside the second sample
    with pytest.raises(StreamError, match=f"shard {shard}: unreadable tar"):
        read_all(url)
    with pytest.raises(StreamError, match="more than data.max_skip_fraction=0.1"):
        read_all(url, "data.on_error=skip", "data.max_skip_fraction=0.1")
    assert len(read_all(url, "data.on_error=skip", "data.max_skip_fraction=0.5")) == 4
    shard.unlink()  # named before training starts, as a shard cut short after indexing is
    with pytest.raises(StreamError, match=f"^shard {shard} does not exist$"):
        read_all(url, "data.on_error=skip")


@pytest.mark.distributed
def test_a_bad_sample_on_one_of_two_ranks_is_one_line_naming_shard_and_sample(tmp_path):
    """The rank that reads it names it; the other, which loses that rank, stays quiet; the launch adds
    no report of its own."""
    url = write_bad_shards(tmp_path / "shards", {(1, 2): corrupt_image})
    cmd = accelerate_cmd(2, "-m", "betavae_dist.train", "--config", "configs/celeba_beta.yaml", f"run_dir={tmp_path / 'run'}",
                         f"data.shards={url}", "train.batch_size=4", "train.steps=20", "data.workers=1",
                         "data.shuffle_buffer=1", "train.progress=false", launcher="betavae_dist.launch")
    proc = run(cmd, check=False)
    lines = [line for line in proc.stderr.splitlines() if "error" in line.lower() or "Traceback" in line]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert re.search(r"betavae_dist\.train: error: .*shard .*shard-000001\.tar, sample s1_2: pyspng", lines[0]), lines[0]


@pytest.mark.distributed
def test_celeba_config_trains_from_shards_on_two_ranks(celeba_shards, tmp_path):
    proc = train(tmp_path / "run", f"data.shards={urls(celeba_shards)}", "train.batch_size=4", "train.steps=9",
                 "data.workers=2", "data.shuffle_buffer=4", nproc=2, config="configs/celeba_beta.yaml")
    assert "2 process(es)" in proc.stdout
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 9 and lines[-1]["data_skipped"] == 0  # 9 steps cross an epoch boundary (7)
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()


@pytest.mark.integration
def test_pipe_urls_stream_like_files(celeba_shards):
    piped = "pipe:cat " + urls(celeba_shards)
    cfg = from_sources("configs/celeba_beta.yaml", [f"data.shards={piped}", f"data.manifest={celeba_shards}/manifest.json",
                                                    "train.batch_size=4", "data.workers=0", "data.shuffle_buffer=4"])
    in_process_stream = shard_stream(stream_cfg(celeba_shards, "data.workers=0"), 1, 0)
    assert keys_of(shard_stream(cfg, 1, 0), 0, 7) == keys_of(in_process_stream, 0, 7)


@pytest.mark.distributed
def test_skipped_samples_are_counted_in_the_training_log(tmp_path):
    url = write_bad_shards(tmp_path / "shards", {(0, 1): corrupt_image})
    train(tmp_path / "run", f"data.shards={url}", "train.batch_size=4", "train.steps=2", "data.on_error=skip",
          "data.max_skip_fraction=0.5", "data.workers=1", nproc=2, config="configs/celeba_beta.yaml")
    last = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["data_skipped"] == 1


def small_image(sample):
    return {**sample, "png": png_bytes(Image.fromarray(np.zeros((32, 32, 3), np.uint8)))}


def test_image_of_the_wrong_shape_is_named(tmp_path):
    url = write_bad_shards(tmp_path / "shards", {(0, 3): small_image})
    with pytest.raises(StreamError, match=r"sample s0_3: image of shape \(3, 32, 32\), the manifest says \(3, 64, 64\)"):
        read_all(url)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_png_decodes_to_the_same_pixels_as_pillow(mode):
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    expected = np.asarray(image)
    expected = expected[None] if expected.ndim == 2 else expected.transpose(2, 0, 1)
    decoded = decode({"png": png_bytes(image)}, expected.shape)
    assert decoded.dtype == np.uint8 and (decoded == expected).all()


def test_sixteen_bit_png_keeps_its_top_eight_bits():
    pixels = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16  # 0 .. 65520
    decoded = decode({"png": png_bytes(Image.fromarray(pixels))}, (1, 64, 64))
    assert decoded.dtype == np.uint8 and (decoded[0] == pixels >> 8).all()


@pytest.mark.integration
def test_a_shard_directory_or_its_manifest_stands_for_every_shard(celeba_shards):
    expanded = shard_stream(stream_cfg(celeba_shards), 1, 0)
    for spec in (celeba_shards, celeba_shards / "manifest.json"):
        stream = shard_stream(stream_cfg(celeba_shards, f"data.shards={spec}"), 1, 0)  # the later setting wins
        assert (stream.urls, stream.counts) == (expanded.urls, expanded.counts)
        assert keys_of(stream, 0, 3) == keys_of(expanded, 0, 3)


def test_a_plain_webdataset_set_is_indexed_and_trained_on(tmp_path, monkeypatch):
    from betavae_dist.data import index

    shards = plain_webdataset(tmp_path / "plain")
    run_args = [f"data.shards={shards}", "train.batch_size=4", "train.steps=2", "data.workers=0", "data.shuffle_buffer=4"]
    before = train_here(tmp_path / "run", *run_args, config="configs/celeba_beta.yaml", check=False)
    assert before.returncode == 1 and "get one from python -m betavae_dist.data.index" in before.stderr
    # An interrupted index goes on where it stopped: the first two shards are not read again.
    real, read = index.index_shard, []
    def third_fails(path, shape, any_size):
        if len(read) == 2:
            raise KeyboardInterrupt
        read.append(path.name)
        return real(path, shape, any_size)
    monkeypatch.setattr(index, "index_shard", third_fails)
    with pytest.raises(KeyboardInterrupt):
        index.index(str(shards))
    monkeypatch.setattr(index, "index_shard", lambda *args: (read.append(args[0].name), real(*args))[1])
    manifest = index.index(str(shards), say=lambda line: None)
    assert read == ["celeba-000000.tar", "celeba-000001.tar", "celeba-000002.tar"]
    assert manifest["total"] == 18 and manifest["image"] == {"size": 64, "channels": 3, "extension": "png"}
    assert [s["samples"] for s in manifest["shards"]] == [6, 6, 6] and not list(shards.glob("*.partial"))
    train_here(tmp_path / "run", *run_args, config="configs/celeba_beta.yaml")
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()
    # A shard cut short after indexing is named before training starts.
    cut = shards / "celeba-000001.tar"
    cut.write_bytes(cut.read_bytes()[:5000])
    proc = train_here(tmp_path / "again", *run_args, config="configs/celeba_beta.yaml", check=False)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith(
        f"betavae_dist.train: error: shard {cut} has 5,000 bytes, the manifest {shards / 'manifest.json'} says ")
    assert not (tmp_path / "again" / "metrics.jsonl").exists()


def test_indexing_names_a_sample_of_another_shape(tmp_path):
    from betavae_dist.data.index import main

    shards = plain_webdataset(tmp_path / "plain", shards=2)
    with wds.TarWriter(str(shards / "celeba-000002.tar")) as sink:
        sink.write({"__key__": "small", "png": np.zeros((32, 32, 3), np.uint8)})
    proc = in_process(main, [str(shards)])
    assert proc.returncode == 1 and proc.stderr.strip() == (
        f"index: error: shard {shards / 'celeba-000002.tar'}, at sample small: image of shape (3, 32, 32), "
        "the samples before it have (3, 64, 64) (--any-size indexes images of any size and mode; train on them with "
        "data.resize=crop)")


@pytest.mark.distributed
def test_a_plain_webdataset_set_trains_on_two_ranks(tmp_path):
    shards = plain_webdataset(tmp_path / "plain", shards=4)
    proc = run([sys.executable, "-m", "betavae_dist.data.index", str(shards)])  # as the README says
    assert "24 samples in 4 shards, 3x64x64 png images: manifest written" in proc.stdout
    proc = train(tmp_path / "run", f"data.shards={shards}", "train.batch_size=4", "train.steps=4", "data.workers=1",
                 "data.shuffle_buffer=4", nproc=2, config="configs/celeba_beta.yaml")
    assert "2 process(es)" in proc.stdout and (tmp_path / "run" / "export" / "model.safetensors").is_file()
