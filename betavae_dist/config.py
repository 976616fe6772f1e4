"""Experiment configuration: plain dataclasses, a YAML file, and typed `key=value` overrides.

`load_or_exit(argv)` reads `--config FILE` (several layer in order) plus dotted overrides such as
`loss.beta=8 train.steps=2000`; `--help` lists every key with its type, default and meaning, taken
from the comments of the dataclasses below.
Any unknown key or value of the wrong type raises ConfigError naming the key and where it came
from (the YAML file or the command line); `main()` of each entry point turns it into exit code 2
before any process group is started. The names a key accepts (architectures, objectives, datasets,
metrics, optimisers, likelihoods) are read from the registries of those parts.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml
from accelerate.tracking import LOGGER_TYPE_TO_CLASS

from .data import DATASETS, SOURCES
from .metrics import METRICS
from .metrics.beta_vae import BetaVAESettings
from .metrics.classifiers import BACKENDS
from .metrics.dci import DCISettings
from .metrics.factor_vae import FactorVAESettings
from .metrics.irs import IRSSettings
from .metrics.mig import MIGSettings
from .metrics.modularity import ModularitySettings
from .metrics.sap import SAPSettings
from .metrics.unsupervised import UnsupervisedSettings
from .metrics.codes import FACTOR_SETS
from .models import ARCHITECTURES, MAX_CHANNELS, MAX_LATENTS
from .objectives import OBJECTIVES
from .objectives.likelihoods import LIKELIHOODS
from .optim import OPTIMIZERS
from .registry import ConfigError


def comma_list(text: str) -> list[str]:
    """"a, b," -> ["a", "b"]: the names of a comma-separated setting."""
    return [name.strip() for name in text.split(",") if name.strip()]


@dataclass
class DataConfig:
    name: str = "dsprites"  # the factor dataset: training data of source "dataset", and what the metrics use
    source: str = "dataset"  # "dataset" (the one `name` gives) or "webdataset" (tar shards)
    dsprites_npz: str = ""  # optional path to the original dsprites_ndarray_*.npz
    path: str = ""  # the data set's own files: shapes3d's 3dshapes.h5, mpi3d_*'s .npz, cars3d's and smallnorb's folders
    seed: int = 0  # color/noisy/scream_dsprites: draws each image's colour, noise or crop (fixed data, not the run's seed)
    shards: str = ""  # webdataset: a shard directory, its manifest.json, or URLs with brace expansion (pipe:..., http://...)
    manifest: str = ""  # webdataset: manifest.json of the shards; default: beside the first shard
    workers: int = 2  # webdataset: DataLoader worker processes per rank
    shuffle_buffer: int = 1000  # webdataset: samples in each worker's shuffle buffer
    on_error: str = "raise"  # webdataset: "raise" or "skip" bad samples and shards
    max_skip_fraction: float = 0.01  # webdataset: stop once a worker skipped more than this


@dataclass
class ModelConfig:
    arch: str = "conv64"  # "fc" (Higgins et al.), "conv64" (Burgess et al.), "conv64_deep" (CelebA), "dlib_conv"
    latents: int = 10  # size of the code z
    channels: int = 1  # image channels: 1 for dSprites, 3 for colour images
    likelihood: str = "bernoulli"  # "bernoulli" (binary images) or "gaussian" (natural images)
    gaussian_std: float = 0.7071067811865476  # sigma of the Gaussian likelihood; 1/sqrt(2) = summed MSE


@dataclass
class LossConfig:
    objective: str = "beta"  # "beta": recon + beta*KL (Higgins); "annealed": recon + gamma*|KL - C| (Burgess); "dip_i", "dip_ii"
    beta: float = 4.0  # weight of the KL (objective beta); 1 is the plain VAE
    gamma: float = 1000.0  # weight of |KL - C| (objective annealed)
    capacity_max: float = 25.0  # objective annealed: final capacity C, in nats
    capacity_steps: int = 100_000  # C rises linearly from 0 to capacity_max over this many steps
    lambda_od: float = 10.0  # objectives dip_i, dip_ii: weight of the off-diagonal covariance penalty
    lambda_d_factor: float = 10.0  # dip_*: the diagonal's weight is this x lambda_od (disentanglement_lib: 10 for I, 1 for II)


@dataclass
class OptimConfig:
    name: str = "adam"  # the optimiser (optim.py)
    lr: float = 5e-4  # learning rate
    beta1: float = 0.9  # Adam's first-moment decay; SGD's momentum
    beta2: float = 0.999  # Adam's second-moment decay
    weight_decay: float = 0.0  # L2 penalty (decoupled for adamw)
    grad_clip: float = 0.0  # max global grad norm; 0 disables clipping


@dataclass
class TrainConfig:
    steps: int = 10_000  # optimiser steps in all
    batch_size: int = 64  # global batch per optimiser step, whatever the number of ranks
    grad_accum: int = 1  # micro-batches per optimiser step on each rank
    log_every: int = 50  # steps between lines of metrics.jsonl
    ckpt_every: int = 1000  # steps between checkpoints
    keep_checkpoints: int = 3  # newest checkpoints kept
    resume: str = "auto"  # auto: newest verified checkpoint, same config only; force: any config; none; or a path
    report_to: str = ""  # trackers (accelerate's names, comma-separated: tensorboard, wandb, mlflow, ...) or all
    progress: bool = True  # rank 0: a progress bar on a terminal, a line per log step in a log file
    cuda_graph: str = "auto"  # "auto" (one process on one GPU), "on" (say why when it cannot), "off"
    collective_timeout: int = 300  # seconds a rank waits for the others (a frozen or lost peer) before stopping

    @property
    def trackers(self) -> list[str]:
        return comma_list(self.report_to)


@dataclass
class EvalConfig:
    every: int = 0  # evaluate every N training steps and at the end; 0 = not during training
    metrics: str = "beta_vae"  # comma-separated metric names (metrics/)
    factors: str = "all"  # "all" (every varying factor; dSprites: all but colour) or "no_shape"
    seed: int = 0  # the metrics' random draws
    batch_size: int = 64  # images per forward pass (64 was fastest on CPU, see docs/benchmarks.md)
    # Each metric's own settings, disentanglement_lib's defaults (`eval.dci.n_train=2000`); a key
    # without the metric's name sets it for every metric that has it (`eval.n_train=2000`).
    beta_vae: BetaVAESettings = field(default_factory=BetaVAESettings)
    factor_vae: FactorVAESettings = field(default_factory=FactorVAESettings)
    mig: MIGSettings = field(default_factory=MIGSettings)
    dci: DCISettings = field(default_factory=DCISettings)
    sap: SAPSettings = field(default_factory=SAPSettings)
    modularity: ModularitySettings = field(default_factory=ModularitySettings)
    unsupervised: UnsupervisedSettings = field(default_factory=UnsupervisedSettings)
    irs: IRSSettings = field(default_factory=IRSSettings)

    @property
    def metric_names(self) -> list[str]:
        return comma_list(self.metrics)


def shared_metric_keys() -> list[str]:
    """`eval.<setting>` for each setting that some metric has."""
    return sorted({f"eval.{f.name}" for metric in METRICS.values() for f in dataclasses.fields(metric.settings)})


def every_metric(key: str) -> list[str]:
    """`eval.<setting>` for every metric that has it (`eval.n_train` -> `eval.dci.n_train`, ...), or []."""
    head, _, setting = key.partition(".")
    if head != "eval" or "." in setting or setting in {f.name for f in dataclasses.fields(EvalConfig)}:
        return []
    return [f"eval.{name}.{setting}" for name, metric in METRICS.items()
            if setting in {f.name for f in dataclasses.fields(metric.settings)}]


@dataclass
class Config:
    run_dir: str = "runs/dsprites_beta4"  # where config, metrics, checkpoints, export and figures go
    seed: int = 0  # initial weights, data order and noise
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def choices() -> dict[str, tuple[str, ...]]:
    """The names each of these keys accepts; read when a config is checked, so parts registered
    by the user's own modules count."""
    return {
        "data.name": tuple(DATASETS),
        "data.source": SOURCES,
        "data.on_error": ("raise", "skip"),
        "model.arch": tuple(ARCHITECTURES),
        "model.likelihood": tuple(LIKELIHOODS),
        "loss.objective": tuple(OBJECTIVES),
        "optim.name": tuple(OPTIMIZERS),
        "eval.factors": FACTOR_SETS,
        **{key: BACKENDS for key in every_metric("eval.backend")},  # eval.dci.backend, eval.sap.backend
        "train.cuda_graph": ("auto", "on", "off"),
    }


# Old names still accepted for one release, with a line saying so: key -> {old value: new value},
# and old key -> (new key, {old value: new value}).
DEPRECATED = {
    "loss.objective": {"H": "beta", "B": "annealed"},
    "data.source": {"dsprites": "dataset"},
}
RENAMED = {"train.tensorboard": ("train.report_to", {True: "tensorboard", False: ""})}


FLOAT32_MAX = 3.4028234663852886e38
MAX_SEED = 2**31 - 1  # numpy's seeds stop at 2**32 - 1, and each rank seeds with seed + rank (train.py)


def _coerce(key: str, value: Any, expected: type, source: str) -> Any:
    """Check `value` against the field type; ints are accepted where floats are expected."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if expected is float and isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value} ({source})")
    if expected is float and isinstance(value, float) and abs(value) > FLOAT32_MAX:  # training computes in fp32
        raise ConfigError(f"{key}: must be within float32's range (±3.4e38), got {value} ({source})")
    if expected is str and isinstance(value, bool) and key == "train.cuda_graph":
        return "on" if value else "off"  # YAML 1.1 reads on/off as booleans
    if expected is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # e.g. resume=123 would be odd, but a path like 2024 is a string
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(
            f"{key}: expected {expected.__name__}, got {type(value).__name__} {value!r} ({source})"
        )
    return value


def _did_you_mean(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, [*flat(Config().to_dict()), *RENAMED, *shared_metric_keys()], n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


def _apply(obj: Any, key: str, value: Any, source: str) -> None:
    fanned = every_metric(key)
    for metric_key in fanned:
        _apply(obj, metric_key, value, source)
    if fanned:
        return
    if key in RENAMED:
        new_key, values = RENAMED[key]
        print(f"config: {key} is deprecated, use {new_key} ({source})", file=sys.stderr)
        key, value = new_key, values.get(value, value) if isinstance(value, bool) else value
    *parents, leaf = key.split(".")
    target = obj
    for i, name in enumerate(parents):
        if not dataclasses.is_dataclass(target) or name not in {f.name for f in dataclasses.fields(target)}:
            raise ConfigError(f"unknown config key '{'.'.join(parents[: i + 1])}' ({source}){_did_you_mean(key)}")
        target = getattr(target, name)
    if not dataclasses.is_dataclass(target):
        raise ConfigError(f"unknown config key '{key}' ({source}){_did_you_mean(key)}")
    hints = get_type_hints(type(target))
    if leaf not in hints:
        raise ConfigError(f"unknown config key '{key}' ({source}){_did_you_mean(key)}")
    expected = hints[leaf]
    if dataclasses.is_dataclass(expected):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of settings, got {value!r} ({source})")
        for sub, sub_value in value.items():
            _apply(obj, f"{key}.{sub}", sub_value, source)
        return
    value = _coerce(key, value, expected, source)
    if value in DEPRECATED.get(key, {}):
        new = DEPRECATED[key][value]
        print(f"config: {key}={value!r} is deprecated, use {key}={new!r} ({source})", file=sys.stderr)
        value = new
    allowed = choices().get(key)
    if allowed is not None and value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(allowed)} ({source})")
    setattr(target, leaf, value)


MAX_BATCH = 1 << 20


def _check(cfg: Config) -> None:
    ranges = {  # key: (value, lowest, highest, what is allowed)
        "seed": (cfg.seed, 0, MAX_SEED, f"0..{MAX_SEED}"),
        "eval.seed": (cfg.eval.seed, 0, MAX_SEED, f"0..{MAX_SEED}"),
        "model.latents": (cfg.model.latents, 1, MAX_LATENTS, f"1..{MAX_LATENTS}"),
        "model.channels": (cfg.model.channels, 1, MAX_CHANNELS, f"1..{MAX_CHANNELS}"),
        "train.batch_size": (cfg.train.batch_size, 1, MAX_BATCH, f"1..{MAX_BATCH}"),
        "loss.beta": (cfg.loss.beta, 0, math.inf, ">= 0"),
        "loss.gamma": (cfg.loss.gamma, 0, math.inf, ">= 0"),
        "loss.capacity_max": (cfg.loss.capacity_max, 0, math.inf, ">= 0"),
        "optim.beta1": (cfg.optim.beta1, 0, 0.999999, "in [0, 1)"),
        "optim.beta2": (cfg.optim.beta2, 0, 0.999999, "in [0, 1)"),
        "optim.weight_decay": (cfg.optim.weight_decay, 0, math.inf, ">= 0"),
        "optim.grad_clip": (cfg.optim.grad_clip, 0, math.inf, ">= 0 (0 = off)"),
        "data.max_skip_fraction": (cfg.data.max_skip_fraction, 0, 1, "in [0, 1]"),
        "data.workers": (cfg.data.workers, 0, 1024, "0..1024"),
        "eval.every": (cfg.eval.every, 0, math.inf, ">= 0 (0 = off)"),
    }
    positive = {
        "loss.capacity_steps": cfg.loss.capacity_steps,
        "model.gaussian_std": cfg.model.gaussian_std,
        "data.shuffle_buffer": cfg.data.shuffle_buffer,
        "train.steps": cfg.train.steps,
        "train.batch_size": cfg.train.batch_size,
        "train.grad_accum": cfg.train.grad_accum,
        "train.log_every": cfg.train.log_every,
        "train.ckpt_every": cfg.train.ckpt_every,
        "train.keep_checkpoints": cfg.train.keep_checkpoints,
        "train.collective_timeout": cfg.train.collective_timeout,
        "optim.lr": cfg.optim.lr,
        "eval.batch_size": cfg.eval.batch_size,
        **{key: value for key, value in flat(dataclasses.asdict(cfg.eval), "eval.").items()
           if type(value) is int and key.count(".") == 2},  # every metric's sizes
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    for key, (value, low, high, allowed) in ranges.items():
        if not low <= value <= high:
            raise ConfigError(f"{key}: must be {allowed}, got {value}")
    channels = DATASETS[cfg.data.name].image_shape[0]
    if cfg.data.source == "dataset" and cfg.model.channels != channels:
        raise ConfigError(f"model.channels={cfg.model.channels}: data.name={cfg.data.name} images have {channels} "
                          "channel(s)")
    if cfg.data.source == "webdataset" and not cfg.data.shards:
        raise ConfigError("data.source=webdataset needs data.shards (shard URLs)")
    if cfg.eval.every and cfg.model.channels != channels:
        raise ConfigError(f"eval.every: the metrics run on data.name={cfg.data.name} ({channels} channel(s)) but "
                          f"model.channels={cfg.model.channels}; set eval.every=0")
    for name in cfg.eval.metric_names:
        METRICS.choose(name, "eval.metrics")
    trackers = ("all", *LOGGER_TYPE_TO_CLASS)
    unknown = [t for t in cfg.train.trackers if t not in trackers]
    if unknown:
        raise ConfigError(f"train.report_to: unknown tracker {unknown[0]!r}; choose from {', '.join(trackers)}")


def apply_mapping(cfg: Config, data: dict, source: str) -> None:
    for key, value in data.items():
        _apply(cfg, str(key), value, source)


def apply_overrides(cfg: Config, overrides: list[str]) -> None:
    """Dotted `key=value` items from the command line, values parsed as YAML scalars."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (command line)")
        _apply(cfg, key.strip(), yaml.safe_load(raw) if raw else "", "on the command line")
    _check(cfg)


def from_sources(config_files: str | list[str] | None, overrides: list[str]) -> Config:
    """Defaults, then each YAML file in order (a later one overrides what an earlier one set), then
    `key=value` overrides."""
    cfg = Config()
    files = [config_files] if isinstance(config_files, str) else list(config_files or [])
    for config_file in files:
        apply_mapping(cfg, read_yaml(Path(config_file)), f"in {config_file}")
    apply_overrides(cfg, overrides)
    return cfg


def read_yaml(path: Path) -> dict:
    """A YAML mapping; a problem is a ConfigError naming the file (with line and column)."""
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a YAML config was expected)") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(e).split())}") from None
    if data is None:  # an empty file (or only comments) would silently train every default
        raise ConfigError(f"{path}: empty config file; give at least one key, or leave out --config for the defaults")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at top level")
    return data


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_cli(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split `--config FILE [--config FILE2 ...] key=value ...` into the files and the overrides."""
    config_files, overrides, it = [], [], iter(argv)
    for arg in it:
        if arg == "--config":
            config_file = next(it, None)
            if config_file is None:
                raise ConfigError("--config needs a file path (command line)")
            config_files.append(config_file)
        elif arg.startswith("--config="):
            config_files.append(arg.split("=", 1)[1])
        elif arg.startswith("-"):
            raise ConfigError(f"unknown option {arg!r} (command line); use --config FILE key=value ..., or --help")
        else:
            overrides.append(arg)
    return config_files, overrides


def usage(prog: str) -> str:
    return (f"usage: python -m {prog} --config FILE [--config FILE ...] [key=value ...]\n"
            f"       accelerate launch [--config_file launch/X.yaml] -m {prog} --config FILE [key=value ...]\n"
            "Files layer in order, then key=value overrides (values parsed as YAML). --help lists the keys.")


def describe() -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) of every config key, from the dataclasses and their comments."""
    rows = []

    def walk(cls, prefix: str) -> None:
        comments = {}
        for line in inspect.getsource(cls).splitlines():
            name, _, rest = line.strip().partition(":")
            if "#" in rest and name.isidentifier():
                comments[name] = rest.split("#", 1)[1].strip()
        defaults = cls()
        for f in dataclasses.fields(cls):
            value = getattr(defaults, f.name)
            if dataclasses.is_dataclass(value):
                walk(type(value), f"{prefix}{f.name}.")
            else:
                rows.append((f"{prefix}{f.name}", get_type_hints(cls)[f.name].__name__, repr(value), comments.get(f.name, "")))

    walk(Config, "")
    return rows


def help_text(prog: str) -> str:
    rows = describe()
    width = max(len(key) for key, *_ in rows)
    lines = [usage(prog), "", "config keys (key  type  default  meaning):"]
    lines += [f"  {key:<{width}}  {kind:<5}  {default:<12}  {meaning}" for key, kind, default, meaning in rows]
    lines += ["", "keys for every metric that has the setting (eval.n_train=2000 sets eval.dci.n_train, ...):"]
    lines += [f"  {key}: {', '.join(k.split('.')[1] for k in every_metric(key))}" for key in shared_metric_keys()]
    allowed = choices()
    lines += ["", "names each key accepts:"] + [f"  {key}: {', '.join(names)}" for key, names in allowed.items()]
    lines += [f"  eval.metrics (comma-separated): {', '.join(METRICS)}"]
    return "\n".join(lines)


def load_or_exit(argv: list[str], prog: str) -> Config:
    """Parse the command line: no arguments print the usage and exit 2, --help prints every key and
    exits 0; a config problem prints one line and exits 2."""
    if not argv:
        print(usage(prog), file=sys.stderr)
        raise SystemExit(2)
    if "--help" in argv or "-h" in argv:
        print(help_text(prog))
        raise SystemExit(0)
    try:
        return from_sources(*parse_cli(argv))
    except ConfigError as e:
        print(f"{prog}: config error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def flat(d: dict, prefix: str = "") -> dict:
    """A nested dict as {"a.b": value}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# What a resumed run may change: how long it trains, how it logs, checkpoints, evaluates and runs.
# Everything else is the run's identity (model, objective, data, optimiser, seed, batch).
RESUMABLE = ("run_dir", "train.steps", "train.grad_accum", "train.log_every", "train.ckpt_every",
             "train.keep_checkpoints", "train.resume", "train.report_to", "train.progress", "train.cuda_graph",
             "train.collective_timeout", "data.workers", "eval.")


def identity_changes(recorded: Config, cfg: Config) -> list[str]:
    """`key: old -> new` for each identity key in which `cfg` differs from a run's recorded config."""
    old, new = flat(recorded.to_dict()), flat(cfg.to_dict())
    return [f"{k}: {old[k]!r} -> {new[k]!r}" for k in old if old[k] != new[k] and not k.startswith(RESUMABLE)]


def save_yaml(cfg: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
