
import pytest

from betavae_dist.config import ConfigError
from betavae_dist.config_files import parse_cli
from betavae_dist.experiment import from_sources
from betavae_dist.train import main as train_main
from helpers import ROOT, in_process

BETA4 = str(ROOT / "configs" / "dsprites_beta4.yaml")


def test_yaml_then_typed_overrides():
    cfg = from_sources(str(ROOT / "configs/dsprites_beta4.yaml"), ["loss.beta=8", "train.steps=12", "optim.lr=1e-3"])
    assert cfg.loss.beta == 8.0 and isinstance(cfg.loss.beta, float)
    assert cfg.train.steps == 12 and cfg.optim.lr == 1e-3
    assert cfg.model.arch == "conv64"


def test_vae_config_is_beta_one():
    assert from_sources(str(ROOT / "configs/dsprites_vae.yaml"), []).loss.beta == 1.0


@pytest.mark.parametrize("override, message", [
    ("loss.betta=2", "unknown config key 'loss.betta' (on the command line); did you mean loss.beta?"),
    ("trian.steps=2", "unknown config key 'trian' (on the command line); did you mean train.steps?"),
    ("nope.beta=2", "unknown config key 'nope' (on the command line)$"),
    ("train.steps=abc", "train.steps: expected int, got str"),
    ("train.steps=1.5", "train.steps: expected int, got float"),
    ("train.report_to=3", "train.report_to: unknown tracker '3'"),
    ("train.report_to=tensorboard,wandbb", "train.report_to: unknown tracker 'wandbb'; choose from all, aim"),
    ("model.arch=resnet", "model.arch: 'resnet' is not one of"),
    ("train.batch_size=0", "train.batch_size: must be positive"),
    ("beta", "not of the form key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_sources(None, [override])


def test_bad_yaml_key_names_the_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("loss:\n  bta: 2\n")
    with pytest.raises(ConfigError, match=f"unknown config key 'loss.bta' \\(in {path}\\)"):
        from_sources(str(path), [])
    path.write_text("train:\n  steps: many\n")
    with pytest.raises(ConfigError, match=f"train.steps: expected int.*{path}"):
        from_sources(str(path), [])
    path.write_text("train:\nloss:\n  beta: 2\n")  # a section left empty
    with pytest.raises(ConfigError, match=f"^'train' is a section, not a setting \\(in {path}\\), given None: list its "
                                          "keys under it, or leave it out$"):
        from_sources(str(path), [])


def test_cli_parsing():
    assert parse_cli(["--config", "a.yaml", "x=1"]) == (["a.yaml"], ["x=1"])
    assert parse_cli(["--config=a.yaml"]) == (["a.yaml"], [])
    with pytest.raises(ConfigError, match="unknown option"):
        parse_cli(["--steps", "3"])


def test_train_exits_2_on_bad_config_before_starting(tmp_path):
    proc = in_process(train_main, ["--config", BETA4, f"run_dir={tmp_path / 'r'}", "loss.betta=3"])
    assert proc.returncode == 2
    assert "unknown config key 'loss.betta' (on the command line)" in proc.stderr
    assert not (tmp_path / "r").exists()


# The bad configs of the reliability review: each was accepted silently, crashed with a traceback,
# or was caught only at step 0.
@pytest.mark.parametrize("override, message", [
    ("loss.beta=-1", "loss.beta: must be >= 0, got -1.0"),
    ("loss.objective=annealed loss.gamma=-5", "loss.gamma: must be >= 0"),
    ("data.max_skip_fraction=-0.5", "data.max_skip_fraction: must be in [0, 1]"),
    ("eval.every=-1", "eval.every: must be >= 0 (0 = off)"),
    ("optim.lr=nan", "optim.lr: must be a finite number, got nan"),
    ("optim.lr=.inf", "optim.lr: must be a finite number, got inf"),
    ("loss.beta=nan", "loss.beta: must be a finite number"),
    ("model.channels=0", "model.channels: must be 1..16"),
    ("model.channels=3", "model.channels=3: data.name=dsprites images have 1 channel"),
    ("optim.beta1=2", "optim.beta1: must be in [0, 1)"),
    ("optim.weight_decay=-1", "optim.weight_decay: must be >= 0"),
    ("loss.objective=annealed loss.capacity_steps=0", "loss.capacity_steps: must be positive"),
    ("seed=-1", "seed: must be 0..2147483647"),
    ("seed=4294967296", "seed: must be 0..2147483647"),  # numpy's limit is 2**32 - 1, before adding the rank
    ("optim.lr=1e39", "optim.lr: must be within float32's range (±3.4e38), got 1e+39"),
    ("train.batch_size=1000000000000", "train.batch_size: must be 1..1048576"),
    ("model.latents=1000000000", "model.latents: must be 1..4096"),
    ("model.gaussian_std=0", "model.gaussian_std: must be positive"),
])
def test_out_of_range_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        from_sources(None, override.split())
    assert message in str(error.value)


def test_duplicate_yaml_keys_empty_and_binary_files_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("loss:\n  beta: 4\n  beta: 8\n")
    with pytest.raises(ConfigError, match=r"line 3, column 3: invalid YAML: duplicate key 'beta'"):
        from_sources(str(path), [])
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing set yet\n")
    with pytest.raises(ConfigError, match="empty.yaml: empty config file; give at least one key"):
        from_sources(str(path), [])
    path = tmp_path / "binary.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="not a text file"):
        from_sources(str(path), [])


def test_each_objective_has_its_own_settings_and_a_key_of_another_names_it(capsys):
    annealed = from_sources(None, ["loss.objective=annealed", "loss.gamma=50", "loss.capacity_max=5"])
    assert (annealed.loss.gamma, annealed.loss.capacity_max, annealed.loss.capacity_steps) == (50.0, 5.0, 100_000)
    assert not hasattr(annealed.loss, "beta")  # nor in its config.yaml
    with pytest.raises(ConfigError, match=r"unknown config key 'loss.gamma' \(on the command line\): not a setting of "
                                          r"loss.objective=beta \(its settings: beta\)"):
        from_sources(None, ["loss.gamma=50"])
    with pytest.raises(ConfigError, match=r"'loss.beta' \(on the command line\): not a setting of loss.objective=dip_ii"):
        from_sources(None, ["loss.objective=dip_ii", "loss.beta=2"])
    # a later layer that chooses another objective drops the earlier layer's settings of its own, with a line
    dip = from_sources(BETA4, ["loss.objective=dip_ii"])
    assert dip.loss.lambda_d_factor == 1.0 and dip.model.arch == "conv64"  # disentanglement_lib's II default; BETA4's model
    err = capsys.readouterr().err
    assert f"config: loss.beta (in {BETA4}) is not a setting of loss.objective=dip_ii, chosen later: ignored" in err
    assert from_sources(None, ["loss.objective=dip_i"]).loss.lambda_d_factor == 10.0


def test_allowed_names_come_from_the_registries():
    from betavae_dist.config import choices
    from betavae_dist.experiment import Config
    from betavae_dist.optim_config import OPTIMIZERS
    OPTIMIZERS.register("lion_test")(OPTIMIZERS["sgd"])
    try:
        assert from_sources(None, ["optim.name=lion_test"]).optim.name == "lion_test"
        assert "lion_test" in choices(Config())["optim.name"]
    finally:
        del OPTIMIZERS["lion_test"]
    with pytest.raises(ConfigError, match="optim.name: 'lion_test' is not one of adam, adamw, adagrad, sgd"):
        from_sources(None, ["optim.name=lion_test"])


def test_help_lists_every_key_with_type_default_and_meaning():
    from betavae_dist.config import flat
    from betavae_dist.experiment import Config
    proc = in_process(train_main, ["--help"])
    assert proc.returncode == 0
    table = proc.stdout.split("config keys")[1].split("\n\n")[0]
    lines = {}  # a key of several objectives (loss.beta) has a line for each
    for line in table.splitlines()[1:]:
        lines[line.split()[0]] = lines.get(line.split()[0], "") + line
    for key, default in flat(Config().to_dict()).items():
        assert key in lines, key
        assert repr(default) in lines[key]
    assert "loss.objective: beta, annealed" in proc.stdout  # the names each key accepts, from the registries
    assert "[objective=annealed] weight of |KL - C|" in lines["loss.gamma"]  # each objective's own settings


def test_no_arguments_print_the_usage_and_exit_2(tmp_path):
    proc = in_process(train_main, [])
    assert proc.returncode == 2 and proc.stderr.startswith("usage: python -m betavae_dist.train --config FILE")
    assert proc.stdout == ""  # nothing started


def test_config_files_layer_in_order(tmp_path):
    base, change = tmp_path / "base.yaml", tmp_path / "change.yaml"
    base.write_text("loss:\n  objective: annealed\n  gamma: 2.0\n  capacity_max: 50.0\ntrain:\n  steps: 7\n")
    change.write_text("loss:\n  gamma: 16.0\n")
    cfg = from_sources([str(base), str(change)], ["train.steps=9"])
    assert (cfg.loss.gamma, cfg.loss.capacity_max, cfg.train.steps) == (16.0, 50.0, 9)
    assert parse_cli(["--config", "a.yaml", "--config=b.yaml", "x=1"]) == (["a.yaml", "b.yaml"], ["x=1"])


def test_yaml_syntax_errors_keep_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("loss:\n  beta: 4\n   gamma: 2\n")
    with pytest.raises(ConfigError, match=f"{path}, line 3, column 9: invalid YAML: mapping values are not allowed here"):
        from_sources(str(path), [])


def test_a_batch_that_cannot_fit_in_memory_is_refused_before_starting(tmp_path):
    # 2^20 conv64 samples per micro-batch need over a terabyte of activations; 2^20 / 2^10 fit.
    proc = in_process(train_main, ["--config", BETA4, f"run_dir={tmp_path / 'r'}",
                                   "train.batch_size=1048576"])
    assert proc.returncode == 2 and "train.batch_size=1048576: 1048576 samples per micro-batch need about" in proc.stderr
    assert "lower train.batch_size or raise train.grad_accum" in proc.stderr and not (tmp_path / "r").exists()
    from betavae_dist.preflight import check_memory

    check_memory(from_sources(None, ["train.batch_size=1048576", "train.grad_accum=1024"]), 1024)
