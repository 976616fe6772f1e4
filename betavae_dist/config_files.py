"""A config from files and the command line: YAML files layered in order, then `key=value`
overrides parsed as YAML scalars (`--config FILE [--config FILE ...] key=value ...`), `--help`
(every key with its type, default and meaning), and the one-line errors that name the file or
the command line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, build, choices, describe, fanned_keys, fanned_settings


def mapping_items(data: dict, source: str, prefix: str = "") -> list[tuple[str, Any, str]]:
    """A YAML mapping as (dotted key, value, source), in order."""
    out = []
    for key, value in data.items():
        if isinstance(value, dict):
            out += mapping_items(value, source, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value, source))
    return out


def override_items(overrides: list[str]) -> list[tuple[str, Any, str]]:
    """Dotted `key=value` items from the command line, values parsed as YAML scalars."""
    items = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (command line)")
        value = yaml.safe_load(raw) if raw else ""
        items += (mapping_items(value, "on the command line", f"{key.strip()}.") if isinstance(value, dict)
                  else [(key.strip(), value, "on the command line")])
    return items


def load(root: type, config_files: str | list[str] | None, overrides: list[str]):
    """Defaults, then each YAML file in order (a later one overrides what an earlier one set), then
    `key=value` overrides."""
    files = [config_files] if isinstance(config_files, str) else list(config_files or [])
    items = [item for path in files for item in mapping_items(read_yaml(Path(path)), f"in {path}")]
    return build(root, items + override_items(overrides))


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


def help_text(root: type, prog: str) -> str:
    return usage(prog) + "\n\n" + keys_text(root)


def keys_text(root: type, sections: tuple[str, ...] = ("",)) -> str:
    """Every config key under `sections` (dotted prefixes; all by default) with its type, default and
    meaning, the keys that set a setting of every subsection, and the names each key accepts."""
    cfg = root()
    rows = [row for row in describe(cfg) if row[0].startswith(sections)]
    width = max(len(key) for key, *_ in rows)
    lines = ["config keys (key  type  default  meaning):"]
    lines += [f"  {key:<{width}}  {kind:<5}  {default:<12}  {meaning}" for key, kind, default, meaning in rows]
    fanned = [key for key in fanned_settings(cfg) if key.startswith(sections)]
    if fanned:
        lines += ["", "keys for every section that has the setting (eval.n_train=2000 sets eval.dci.n_train, ...):"]
        lines += [f"  {key}: {', '.join(k.split('.')[-2] for k in fanned_keys(cfg, key))}" for key in fanned]
    lines += ["", "names each key accepts:"] + [f"  {key}: {', '.join(names)}" for key, names in choices(cfg).items()
                                              if key.startswith(sections)]
    return "\n".join(lines)


def load_or_exit(root: type, argv: list[str], prog: str):
    """Parse the command line: no arguments print the usage and exit 2, --help prints every key and
    exits 0; a config problem prints one line and exits 2."""
    if not argv:
        print(usage(prog), file=sys.stderr)
        raise SystemExit(2)
    if "--help" in argv or "-h" in argv:
        print(help_text(root, prog))
        raise SystemExit(0)
    try:
        return load(root, *parse_cli(argv))
    except ConfigError as e:
        print(f"{prog}: config error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
