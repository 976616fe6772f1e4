"""Checkpoints verify themselves: a damaged newest checkpoint is named and skipped, never trained on.
The trainer runs in this process (helpers.train_here) unless a test needs a process of its own."""

import json
import resource
import shutil
import subprocess

import pytest
import torch

from betavae_dist import checkpoint
from helpers import HUNG, ROOT, TINY, accelerate_cmd, in_process, max_abs_diff, train, train_here, weights

STEPS = ["train.ckpt_every=2", "train.keep_checkpoints=3"]


def test_write_verify_prune_on_a_directory(tmp_path):
    """The checkpoint files alone, no trainer: what a save leaves, what verify says, what prune keeps."""
    ckpts = tmp_path / "checkpoints"
    for step in (2, 4, 6):
        checkpoint.write(ckpts, step, lambda d, step=step: (d / "model.safetensors").write_bytes(bytes([step]) * 100))
    assert [step for step, _ in checkpoint.checkpoints(ckpts)] == [2, 4, 6]
    assert all(checkpoint.verify(path) is None for _, path in checkpoint.checkpoints(ckpts))
    assert checkpoint.read_step(ckpts / "step_4") == 4
    (ckpts / ".tmp-step_8").mkdir()  # what a kill during a save leaves: ignored, then cleaned by the next save
    assert checkpoint.latest(ckpts) == ckpts / "step_6"
    flip_bytes(ckpts / "step_6" / "model.safetensors")
    said = []
    assert checkpoint.latest_verified(ckpts, said.append) == ckpts / "step_4"
    assert said == [f"skipping checkpoint {ckpts / 'step_6'}: {ckpts / 'step_6' / 'model.safetensors'} is damaged "
                    "(its sha256 differs from the manifest's)"]
    (ckpts / "step_4").rename(ckpts / "step_5")  # a directory renamed by hand is not the step it claims
    assert checkpoint.verify(ckpts / "step_5") == f"{ckpts / 'step_5' / checkpoint.MANIFEST} is for step 4, not 5"
    checkpoint.write(ckpts, 8, lambda d: (d / "model.safetensors").write_bytes(b"8"))
    checkpoint.prune(ckpts, keep=2)
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_6", "step_8"]


@pytest.mark.parametrize("intruder", ["a file", "a dangling link"])
def test_something_else_named_like_a_checkpoint_is_named_before_training_and_left_alone(tmp_run, intruder):
    ckpts = tmp_run / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / "step_4").write_text("mine") if intruder == "a file" else (ckpts / "step_4").symlink_to(tmp_run / "gone")
    (ckpts / ".old-step_2").write_text("")  # a stale hidden entry of any kind never breaks a run
    proc = train_here(tmp_run, "train.steps=4", "train.ckpt_every=2", check=False)
    assert proc.returncode == 1 and proc.stderr.strip() == (
        f"betavae_dist.train: error: {ckpts / 'step_4'} is {intruder}, not a checkpoint directory, where a "
        "checkpoint will be written; move it out of the checkpoints directory")
    assert not (tmp_run / "metrics.jsonl").exists()  # refused before training
    assert (ckpts / "step_4").is_symlink() or (ckpts / "step_4").read_text() == "mine"
    (ckpts / "step_4").unlink()
    train_here(tmp_run, "train.steps=4", "train.ckpt_every=2")
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_2", "step_4"]


def test_a_full_disk_is_named_as_such(tmp_path, monkeypatch):
    """torch's writer says "unexpected pos" when the disk fills; the line says what happened."""
    ckpts = tmp_path / "checkpoints"
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(100, 100, 0))
    def torch_on_a_full_disk(directory):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    with pytest.raises(checkpoint.CheckpointError) as failed:
        checkpoint.write(ckpts, 2, torch_on_a_full_disk)
    assert str(failed.value) == (f"cannot write {ckpts / '.tmp-step_2'}: No space left on device (0 MiB free there); "
                                 "no checkpoint was written before")


def test_a_full_disk_at_export_says_the_space_left(tmp_path, monkeypatch):
    """The export's own folder is gone when the line is made: the space is that of the folder above."""
    from safetensors import SafetensorError

    from betavae_dist import export

    def full(tensors, path, metadata):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    monkeypatch.setattr(export, "save_file", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(100, 100, 0))
    with pytest.raises(export.ExportError) as failed:
        export.write_files({"w": torch.zeros(1)}, {}, tmp_path / "export")
    assert str(failed.value) == (f"cannot write {tmp_path / '.tmp-export' / 'model.safetensors'}: No space left on "
                                 "device (0 MiB free there); the previous export is intact")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, small_run):
    """The session's small run (checkpoints at steps 2 and 4), and the same run trained straight to step 6."""
    root = tmp_path_factory.mktemp("ckpt")
    (root / "run").symlink_to(small_run)  # tests copy it before they change it
    train_here(root / "straight", "train.steps=6", *STEPS)
    return root


def flip_bytes(path):
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {  # what happens to the newest checkpoint, and the words that must name it
    "flipped weights": (lambda c: flip_bytes(c / "model.safetensors"), "model.safetensors is damaged"),
    "flipped optimizer": (lambda c: flip_bytes(c / "optimizer.bin"), "optimizer.bin is damaged"),
    "truncated optimizer": (lambda c: (c / "optimizer.bin").write_bytes((c / "optimizer.bin").read_bytes()[:100]),
                            "optimizer.bin has 100 bytes"),
    "deleted weights": (lambda c: (c / "model.safetensors").unlink(), "model.safetensors is missing"),
    "another step": (lambda c: (c / "trainer_state.json").write_text('{"step": 3}'), "trainer_state.json"),
    "no manifest": (lambda c: (c / checkpoint.MANIFEST).unlink(), "manifest.json is missing"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_newest_checkpoint_is_named_and_skipped(finished, tmp_path, kind):
    run_dir = tmp_path / "run"
    shutil.copytree(finished / "run", run_dir)
    damage, words = DAMAGE[kind]
    damage(run_dir / "checkpoints" / "step_4")
    resumed = train_here(run_dir, "train.steps=6", *STEPS)
    assert f"skipping checkpoint {run_dir / 'checkpoints' / 'step_4'}:" in resumed.stdout
    assert words in resumed.stdout
    assert f"resuming from {run_dir / 'checkpoints' / 'step_2'} at step 2" in resumed.stdout
    # Steps 3-4 are trained again, so the run ends where the uninterrupted one does.
    assert max_abs_diff(weights(finished / "straight" / "export"), weights(run_dir / "export")) < 1e-6


@pytest.mark.distributed
def test_two_ranks_follow_rank_0s_choice(finished, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished / "run", run_dir)
    flip_bytes(run_dir / "checkpoints" / "step_4" / "model.safetensors")
    resumed = train(run_dir, "train.steps=6", *STEPS, nproc=2)
    assert f"resuming from {run_dir / 'checkpoints' / 'step_2'} at step 2" in resumed.stdout
    assert (run_dir / "export" / "model.safetensors").is_file()


def test_no_checkpoint_that_verifies_or_a_bad_path_is_one_line(finished, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished / "run", run_dir)
    for step in (2, 4):
        flip_bytes(run_dir / "checkpoints" / f"step_{step}" / "model.safetensors")
    proc = train_here(run_dir, "train.steps=6", *STEPS, check=False)
    assert proc.returncode == 1
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"betavae_dist.train: error: no checkpoint under {run_dir / 'checkpoints'} verifies")
    proc = train_here(run_dir, "train.steps=6", f"train.resume={run_dir / 'checkpoints' / 'step_4'}", check=False)
    assert proc.returncode == 1 and f"cannot resume from {run_dir / 'checkpoints' / 'step_4'} (train.resume)" in proc.stderr
    proc = train_here(run_dir, "train.steps=6", f"train.resume={tmp_path / 'nowhere'}", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == (  # a config error: before anything starts
        f"betavae_dist.train: config error: train.resume={tmp_path / 'nowhere'}: no such checkpoint directory")


def test_a_kill_during_cleanup_leaves_only_complete_checkpoints(finished, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished / "run", run_dir)
    ckpts = run_dir / "checkpoints"
    # Old checkpoints are renamed away before deletion; this is what a kill half-way leaves.
    (ckpts / "step_2").rename(ckpts / ".old-step_2")
    (ckpts / ".old-step_2" / "model.safetensors").unlink()
    assert [p.name for _, p in checkpoint.checkpoints(ckpts)] == ["step_4"]
    train_here(run_dir, "train.steps=6", *STEPS)
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_4", "step_6"]  # the stray .old-step_2 is gone
    for _, path in checkpoint.checkpoints(ckpts):
        assert checkpoint.verify(path) is None
    manifest = json.loads((ckpts / "step_6" / checkpoint.MANIFEST).read_text())
    assert manifest["step"] == 6 and "model.safetensors" in manifest["files"]


def test_export_skips_a_damaged_newest_checkpoint(finished, tmp_path):
    from betavae_dist.export.__main__ import main
    run_dir = tmp_path / "run"
    shutil.copytree(finished / "run", run_dir)
    flip_bytes(run_dir / "checkpoints" / "step_4" / "model.safetensors")
    proc = in_process(main, [str(run_dir), str(tmp_path / "out")])
    assert "skipping checkpoint" in proc.stderr and f"exported {run_dir / 'checkpoints' / 'step_2'}" in proc.stdout


def test_a_checkpoint_without_its_manifest_is_refused_even_when_named(finished, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished / "run", run_dir)
    for step in (2, 4):
        (run_dir / "checkpoints" / f"step_{step}" / checkpoint.MANIFEST).unlink()
    assert train_here(run_dir, "train.steps=6", *STEPS, check=False).returncode == 1  # auto: nothing verifies
    named = run_dir / "checkpoints" / "step_4"
    proc = train_here(run_dir, "train.steps=6", *STEPS, f"train.resume={named}", check=False)
    assert proc.returncode == 1
    assert f"cannot resume from {named} (train.resume): {named / checkpoint.MANIFEST} is missing" in proc.stderr


@pytest.mark.distributed
def test_a_write_that_fails_on_one_rank_stops_every_rank_at_once(tmp_path):
    """A 1 MiB file-size limit: rank 0's weights cannot be written, rank 1's small RNG state can. Rank 1
    must learn of it then, not wait out train.collective_timeout and blame a frozen peer. The job
    says so once: rank 0 names itself, rank 1 stays quiet, and the launcher adds no report."""
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    proc = subprocess.run(accelerate_cmd(2, "-m", "betavae_dist.train", "--config", "configs/dsprites_beta4.yaml",
                                         f"run_dir={tmp_path / 'run'}", *TINY, "train.steps=4", *STEPS,
                                         "train.collective_timeout=600", launcher="betavae_dist.launch"),
                          cwd=ROOT, capture_output=True, text=True, preexec_fn=limit, timeout=HUNG)
    lines = [line for line in proc.stderr.splitlines() if "betavae_dist.train: error:" in line]
    tmp = tmp_path / "run" / "checkpoints" / ".tmp-step_2"
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith(f"betavae_dist.train: error: rank 0: cannot write {tmp}") and "File too large" in lines[0]
    assert "collective_timeout" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.integration
def test_a_failed_write_is_one_line_and_keeps_the_previous_checkpoint(finished, tmp_path):
    # A 1 MiB file-size limit makes the next checkpoint's writes fail as a full disk would.
    run_dir = tmp_path / "run"
    shutil.copytree(finished / "run", run_dir)
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    proc = subprocess.run(accelerate_cmd(1, "-m", "betavae_dist.train", "--config", "configs/dsprites_beta4.yaml",
                                         f"run_dir={run_dir}", *TINY, "train.steps=6", *STEPS),
                          cwd=ROOT, capture_output=True, text=True, preexec_fn=limit, timeout=HUNG)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"cannot write {run_dir / 'checkpoints' / '.tmp-step_6'}: " in proc.stderr
    kept = f"the previous checkpoint {run_dir / 'checkpoints' / 'step_4'} is intact"
    assert "File too large" in proc.stderr and kept in proc.stderr
    assert checkpoint.verify(run_dir / "checkpoints" / "step_4") is None
    assert not (run_dir / "checkpoints" / ".tmp-step_6").exists()
