"""Configuration machinery: dataclasses whose fields declare their own help and allowed values.

Each part declares its settings beside itself with `setting(default, help, ...)` (data/, models.py,
objectives/, optim.py, metrics/, the trainer's TrainConfig); `experiment.py` composes them into the
`Config` of a run. This module knows none of them: it walks dataclasses.

`build(root, items)` applies (key, value, where it came from) items in order; config_files.py makes
them from YAML files and `key=value` overrides (`loss.beta=8 train.steps=2000`). Any unknown key or
value of the wrong type or range raises ConfigError naming the key and where it came from. Rules:
- a key `S.x` where section S has no setting x sets x in every subsection of S that has it
  (`eval.n_train=2000` sets `eval.dci.n_train`, `eval.sap.n_train`, ...);
- a section with a SWITCH (the loss: `loss.objective`) holds the settings of the part its switch
  names (`variant(name)`), so each objective declares its own (`loss.beta`, `loss.gamma`, ...);
- a dataclass's `check()` runs after every value is set: checks across settings.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import sys
from dataclasses import field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from .registry import ConfigError

FLOAT32_MAX = 3.4028234663852886e38
MAX_SEED = 2**31 - 1  # numpy's seeds stop at 2**32 - 1, and each rank seeds with seed + rank


def setting(default: Any, help: str, *, choices=None, names=None, low=None, high=None, allowed: str = "",
            positive: bool = False, resumable: bool = False):
    """A config field: its default, one line of help and the values it accepts: `choices` (names,
    or a Registry, read when a config is checked, so parts registered later count), a range
    `low`..`high` (`allowed` words it where the default wording does not fit), or `positive`.
    `names`: the names a comma-separated list takes (--help lists them; the section's check() holds
    it to them). `resumable`: a resumed run may change it; the other settings are the run's identity."""
    return field(default=default, metadata=dict(help=help, choices=choices, names=names, low=low, high=high,
                                                allowed=allowed, positive=positive, resumable=resumable))


def section(cls: type, help: str = "", resumable: bool = False, factory=None):
    """A field holding a part's settings dataclass."""
    return field(default_factory=factory or cls, metadata=dict(help=help, resumable=resumable))


def comma_list(text: str) -> list[str]:
    """"a, b," -> ["a", "b"]: the names of a comma-separated setting."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _fields(obj) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)}


def _sections(obj, prefix: str = ""):
    """(dotted prefix, dataclass) of `obj` and every section under it, parents first."""
    yield prefix, obj
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _sections(value, f"{prefix}{f.name}.")


def _settings(obj):
    """(key, field, value) of every setting under `obj`."""
    for prefix, parent in _sections(obj):
        for f in dataclasses.fields(parent):
            value = getattr(parent, f.name)
            if not dataclasses.is_dataclass(value):
                yield f"{prefix}{f.name}", f, value


def _names(f: dataclasses.Field, kind: str = "choices") -> tuple | None:
    """The names a setting accepts (`kind` "names": that its list takes), as of now: a Registry (or any
    collection), or a function giving them."""
    names = f.metadata.get(kind)
    return None if names is None else tuple(names() if callable(names) else names)


def choices(cfg) -> dict[str, tuple]:
    """The names each key with choices, or a list of names, accepts, now (parts registered since count)."""
    return {key: _names(f) or _names(f, "names") for key, f, _ in _settings(cfg)
            if _names(f) is not None or _names(f, "names") is not None}


def fanned_keys(cfg, key: str) -> list[str]:
    """The keys `S.x` stands for where section S has no setting x: `S.<sub>.x` of each subsection
    that has it (`eval.n_train` -> `eval.dci.n_train`, ...); [] where `key` is a plain key."""
    head, _, leaf = key.rpartition(".")
    if not head:  # the top level's sections are not fanned into
        return []
    target = cfg
    for name in head.split("."):
        if not dataclasses.is_dataclass(target) or name not in _fields(target):
            return []
        target = getattr(target, name)
    if not dataclasses.is_dataclass(target) or leaf in _fields(target):
        return []
    return [f"{head}.{f.name}.{leaf}" for f in dataclasses.fields(target)
            if dataclasses.is_dataclass(getattr(target, f.name)) and leaf in _fields(getattr(target, f.name))]


def fanned_settings(cfg) -> list[str]:
    keys = set()
    for prefix, parent in _sections(cfg):
        for f in dataclasses.fields(parent):
            sub = getattr(parent, f.name)
            if prefix and dataclasses.is_dataclass(sub):
                keys.update(f"{prefix}{g.name}" for g in dataclasses.fields(sub) if g.name not in _fields(parent))
    return sorted(k for k in keys if fanned_keys(cfg, k))


def _coerce(key: str, value: Any, f: dataclasses.Field, expected: type, source: str) -> Any:
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
    names = _names(f)
    if expected is str and isinstance(value, bool) and names is not None and {"on", "off"} <= set(names):
        return "on" if value else "off"  # YAML 1.1 reads on/off as booleans
    if expected is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # a path like 2024 is a string
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{key}: expected {expected.__name__}, got {type(value).__name__} {value!r} ({source})")
    if names is not None and value not in names:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(names)} ({source})")
    return value


def _did_you_mean(cfg, key: str) -> str:
    close = difflib.get_close_matches(key, [*flat(dataclasses.asdict(cfg)), *fanned_settings(cfg)], n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


def _apply(cfg, key: str, value: Any, source: str, overridden: bool = False) -> None:
    """Set `key`; `overridden`: a later layer (file or command line) switched its section to another
    part, so a setting of the part this layer chose is dropped, with a line, not refused."""
    fanned = fanned_keys(cfg, key)
    for sub_key in fanned:
        _apply(cfg, sub_key, value, source)
    if fanned:
        return
    *parents, leaf = key.split(".")
    target = cfg
    for i, name in enumerate(parents):
        if name not in _fields(target) or not dataclasses.is_dataclass(getattr(target, name)):
            raise ConfigError(f"unknown config key '{'.'.join(parents[: i + 1])}' ({source}){_did_you_mean(cfg, key)}")
        target = getattr(target, name)
    if leaf in _fields(target) and dataclasses.is_dataclass(getattr(target, leaf)):
        raise ConfigError(f"'{key}' is a section, not a setting ({source}), given {value!r}: list its keys under it, "
                          f"or leave it out")
    if leaf not in _fields(target):
        switch = getattr(type(target), "SWITCH", None)
        if switch and any(leaf in _fields(type(target).variant(name)) for name in _names(_fields(target)[switch])):
            own = [f.name for f in dataclasses.fields(target) if f.name != switch]
            if overridden:
                if os.environ.get("RANK", "0") == "0":  # every rank reads the config: one line per job
                    print(f"config: {key} ({source}) is not a setting of {'.'.join(parents)}.{switch}="
                          f"{getattr(target, switch)}, chosen later: ignored", file=sys.stderr)
                return
            raise ConfigError(f"unknown config key '{key}' ({source}): not a setting of {'.'.join(parents)}.{switch}="
                              f"{getattr(target, switch)} (its settings: {', '.join(own) or 'none'})"
                              f"{_did_you_mean(cfg, key)}")
        raise ConfigError(f"unknown config key '{key}' ({source}){_did_you_mean(cfg, key)}")
    value = _coerce(key, value, _fields(target)[leaf], get_type_hints(type(target))[leaf], source)
    if leaf != getattr(type(target), "SWITCH", None):  # a switch is set first, by its last value (_switch)
        setattr(target, leaf, value)


def _switch(cfg, items: list[tuple[str, Any, str]]) -> list[bool]:
    """Give each switched section (SWITCH) the settings class its switch names, from the last value
    the files and overrides give it, before any other value is set. Returns, for each item, whether
    it is a setting of that section given in an earlier layer than its switch's last value."""
    overridden = [False] * len(items)
    for prefix, parent in list(_sections(cfg)):
        for f in dataclasses.fields(parent):
            value = getattr(parent, f.name)
            switch = getattr(type(value), "SWITCH", None) if dataclasses.is_dataclass(value) else None
            if not switch:
                continue
            key = f"{prefix}{f.name}.{switch}"
            chosen = [i for i, (k, _, _) in enumerate(items) if k == key]
            if chosen:
                last, (_, name, where) = chosen[-1], items[chosen[-1]]
                name = _coerce(key, name, _fields(value)[switch], str, where)
                setattr(parent, f.name, type(value).variant(name)(**{switch: name}))
                for i, (k, _, source) in enumerate(items[:last]):
                    overridden[i] = k.startswith(f"{prefix}{f.name}.") and source != where
    return overridden


def _check(cfg) -> None:
    """Ranges of every setting, then each dataclass's own `check()`, the sections' before the root's."""
    for key, f, value in _settings(cfg):
        meta = f.metadata
        if meta.get("positive") and value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
        low, high = meta.get("low"), meta.get("high")
        if (low is not None and value < low) or (high is not None and value > high):
            allowed = meta["allowed"] or (f">= {low}" if high is None else f"{low}..{high}" if type(value) is int
                                          else f"in [{low}, {high}]")
            raise ConfigError(f"{key}: must be {allowed}, got {value}")
    for _, part in reversed(list(_sections(cfg))):
        if hasattr(part, "check"):
            part.check()


def build(root: type, items: list[tuple[str, Any, str]]):
    """A checked `root()` with `items` (key, value, source) applied in order."""
    cfg = root()
    overridden = _switch(cfg, items)
    for (key, value, source), dropped in zip(items, overridden):
        _apply(cfg, str(key), value, source, dropped)
    _check(cfg)
    return cfg


def describe(obj, prefix: str = "", note: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) of every setting under `obj`; a switched section lists the
    settings of each of its choices."""
    rows = []
    hints = get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if not dataclasses.is_dataclass(value):
            rows.append((f"{prefix}{f.name}", hints[f.name].__name__, repr(value), note + f.metadata.get("help", "")))
            continue
        switch = getattr(type(value), "SWITCH", None)
        if not switch:
            rows += describe(value, f"{prefix}{f.name}.", note)
            continue
        rows += describe(hints[f.name](), f"{prefix}{f.name}.", note)  # the section's own settings: the switch
        for name in _names(_fields(value)[switch]):
            variant = hints[f.name].variant(name)(**{switch: name})
            rows += [row for row in describe(variant, f"{prefix}{f.name}.", f"[{switch}={name}] ")
                     if row[0] != f"{prefix}{f.name}.{switch}"]
    return rows


def flat(d: dict, prefix: str = "") -> dict:
    """A nested dict as {"a.b": value}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _resumable(cfg) -> set[str]:
    """The keys a resumed run may change: settings and sections marked `resumable`."""
    keys = set()
    for prefix, parent in _sections(cfg):
        for f in dataclasses.fields(parent):
            if f.metadata.get("resumable"):
                value = getattr(parent, f.name)
                keys |= {f"{prefix}{f.name}.{k}" for k in flat(dataclasses.asdict(value))} if dataclasses.is_dataclass(
                    value) else {f"{prefix}{f.name}"}
    return keys


def identity_changes(recorded, cfg) -> list[str]:
    """`key: old -> new` for each identity key in which `cfg` differs from a run's recorded config."""
    old, new = flat(dataclasses.asdict(recorded)), flat(dataclasses.asdict(cfg))
    resumable = _resumable(recorded) | _resumable(cfg)
    return [f"{k}: {old.get(k, '(none)')!r} -> {new.get(k, '(none)')!r}" for k in {**old, **new}
            if old.get(k) != new.get(k) and k not in resumable]


def save_yaml(cfg, path: Path) -> None:
    path.write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
