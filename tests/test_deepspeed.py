"""Real DeepSpeed through Accelerate on 2 gloo ranks (CPU): ZeRO-1/2/3, bf16, resume, export."""

import json

import pytest

from betavae_dist.models import BetaVAE
from helpers import HUNG, ROOT, accelerate_cmd, max_abs_diff, run, weights

pytestmark = pytest.mark.deepspeed

STEPS = ["train.batch_size=16", "train.ckpt_every=3"]


def ds_train(run_dir, launch, *overrides, check=True, launcher_flags=()):
    cmd = accelerate_cmd(2, "-m", "betavae_dist.train", "--config", "configs/dsprites_beta4.yaml",
                         f"run_dir={run_dir}", "train.progress=false", "train.log_every=1", *STEPS, *overrides)
    cmd[cmd.index("--config_file") + 1] = str(launch)
    cmd[cmd.index("--config_file"):cmd.index("--config_file")] = list(launcher_flags)
    return run(cmd, check=check)


@pytest.fixture(scope="module")
def ddp_reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    run(accelerate_cmd(2, "-m", "betavae_dist.train", "--config", "configs/dsprites_beta4.yaml", f"run_dir={run_dir}",
                       "train.progress=false", "train.steps=6", *STEPS))
    return weights(run_dir / "export")


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_zero_stage_trains_resumes_and_exports_like_ddp(stage, ddp_reference, tmp_path):
    launch = ROOT / "launch" / f"zero{stage}.yaml"
    straight = ds_train(tmp_path / "straight", launch, "train.steps=6")
    assert "(DEEPSPEED" in straight.stdout
    assert (tmp_path / "straight" / "checkpoints" / "step_6" / "pytorch_model").is_dir()  # DeepSpeed shards

    ds_train(tmp_path / "resumed", launch, "train.steps=3")
    resumed = ds_train(tmp_path / "resumed", launch, "train.steps=6")
    assert "resuming from" in resumed.stdout and "step_3 at step 3" in resumed.stdout

    exported = weights(tmp_path / "straight" / "export")
    assert {str(t.dtype) for t in exported.values()} == {"torch.float32"}
    assert max_abs_diff(exported, weights(tmp_path / "resumed" / "export")) < 1e-6
    assert max_abs_diff(exported, ddp_reference) < 1e-4
    BetaVAE.from_pretrained(tmp_path / "straight" / "export")


@pytest.mark.parametrize("launch, mode", [("zero2.yaml", "DEEPSPEED"), ("cpu_ddp.yaml", "MULTI_CPU")])
def test_bf16_trains_and_exports_fp32(launch, mode, tmp_path):
    proc = ds_train(tmp_path / "bf16", ROOT / "launch" / launch, "train.steps=12", "train.ckpt_every=12",
                    launcher_flags=["--mixed_precision", "bf16"])
    assert f"({mode}, bf16)" in proc.stdout
    losses = [json.loads(line)["loss"] for line in (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()]
    assert sum(losses[-3:]) < sum(losses[:3])
    exported = weights(tmp_path / "bf16" / "export")
    assert {str(t.dtype) for t in exported.values()} == {"torch.float32"}
    # fp32 master weights, not bf16-rounded copies: some values are not representable in bf16.
    assert any((t != t.bfloat16().float()).any() for t in exported.values())


def test_evaluator_runs_inside_a_zero3_run(tmp_path):
    ds_train(tmp_path / "z3", ROOT / "launch" / "zero3.yaml", "train.steps=2", "eval.every=2", "eval.n_train=100",
             "eval.n_eval=50", "eval.pairs=8", "eval.metrics=beta_vae,mig")
    lines = [json.loads(line) for line in (tmp_path / "z3" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/beta_vae.eval_accuracy" in line for line in lines)


def test_conflicting_deepspeed_setting_is_refused(tmp_path):
    launch = tmp_path / "zero2_accum4.yaml"
    text = (ROOT / "launch" / "zero2.yaml").read_text()
    launch.write_text(text.replace("  zero_stage: 2\n", "  zero_stage: 2\n  gradient_accumulation_steps: 4\n"))
    proc = ds_train(tmp_path / "r", launch, "train.steps=2", check=False)
    assert proc.returncode != 0
    assert "the DeepSpeed config sets gradient_accumulation_steps=4 but this run needs 1" in proc.stderr


def test_zero2_with_optimizer_offload_matches_ddp(ddp_reference, tmp_path):
    # DeepSpeedCPUAdam: its C++ op compiles on first use (~30 s, then cached).
    proc = ds_train(tmp_path / "offload", ROOT / "launch" / "zero2_offload.yaml", "train.steps=6")
    assert "(DEEPSPEED" in proc.stdout
    assert max_abs_diff(weights(tmp_path / "offload" / "export"), ddp_reference) < 1e-4


def test_a_failed_checkpoint_write_under_zero2_is_one_line_from_the_rank_that_failed(tmp_path):
    """DeepSpeed writes its own checkpoint files inside `save_state`; a write that fails there (a
    1 MiB file-size limit) is still agreed on by the ranks: one line, exit 1, no wait for a timeout."""
    import os
    import resource
    import subprocess

    ds_train(tmp_path / "warm", ROOT / "launch" / "zero2.yaml", "train.steps=1")  # DeepSpeed builds its ops first
    cmd = accelerate_cmd(2, "-m", "betavae_dist.train", "--config", "configs/dsprites_beta4.yaml",
                         f"run_dir={tmp_path / 'run'}", "train.progress=false", *STEPS, "train.steps=4",
                         "train.collective_timeout=600", launcher="betavae_dist.launch")
    cmd[cmd.index("--config_file") + 1] = str(ROOT / "launch" / "zero2.yaml")
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, preexec_fn=limit, timeout=HUNG,
                          env={**os.environ, "DS_ACCELERATOR": "cpu"})
    lines = [line for line in proc.stderr.splitlines() if "betavae_dist.train: error:" in line]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    assert f"cannot write {tmp_path / 'run' / 'checkpoints' / '.tmp-step_3'}" in lines[0]
    assert "Traceback" not in proc.stderr and "collective_timeout" not in proc.stderr


def test_factor_vae_trains_its_discriminator_under_ddp_and_zero2_alike(tmp_path):
    """The discriminator is part of the model and its Adam settings a parameter group: both go through
    DDP and ZeRO-2's partitioned optimiser, resume, and the export leaves it out."""
    factor_vae = ["loss.objective=factor_vae", "loss.gamma=20"]
    ddp = ds_train(tmp_path / "ddp", ROOT / "launch" / "cpu_ddp.yaml", "train.steps=6", *factor_vae)
    assert "(MULTI_CPU" in ddp.stdout
    ds_train(tmp_path / "zero2", ROOT / "launch" / "zero2.yaml", "train.steps=3", *factor_vae)
    resumed = ds_train(tmp_path / "zero2", ROOT / "launch" / "zero2.yaml", "train.steps=6", *factor_vae)
    assert "step_3 at step 3" in resumed.stdout
    exported = weights(tmp_path / "zero2" / "export")
    assert not any(name.startswith("critic.") for name in exported)
    assert max_abs_diff(exported, weights(tmp_path / "ddp" / "export")) < 1e-4
    lines = [json.loads(line) for line in (tmp_path / "zero2" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and all("discriminator" in line for line in lines)
