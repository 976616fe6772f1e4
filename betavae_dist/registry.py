"""Named, swappable parts: each kind (architecture, objective, dataset, metric, optimiser,
likelihood) is one `Registry` that maps the name used in configs to its implementation.

Config validation reads the allowed names from the registries, so adding a part is one file plus
one line in its registry (or `REGISTRY.register("name")` from your own module, imported before the
entry point runs). A built-in part is registered as a `Lazy` entry, its module imported the first
time it is looked up: the registries live beside the settings that choose from them, and checking a
config loads no torch.
"""

from __future__ import annotations

import importlib

from .errors import BetaVAEError


class ConfigError(BetaVAEError, ValueError):
    """A configuration problem; the message names the key and its source."""

    exit_code = 2


class Lazy:
    """A part named by where it lives ("package.module:name"), imported the first time its registry
    looks it up; `known` are the attributes a config check reads of it before then (an objective's
    Settings), which the part itself has too."""

    def __init__(self, path: str, **known):
        self.path = path
        vars(self).update(known)

    def load(self):
        module, name = self.path.split(":")
        return getattr(importlib.import_module(module), name)


class Registry(dict):
    def __init__(self, kind: str, entries: dict | None = None):
        super().__init__(entries or {})
        self.kind = kind

    def register(self, name: str):
        """Decorator: `@OBJECTIVES.register("free_bits")` above a class or function."""
        def add(part):
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = part
            return part
        return add

    def __getitem__(self, name: str):
        part = super().__getitem__(name)
        if isinstance(part, Lazy):
            part = part.load()
            super().__setitem__(name, part)
        return part

    def about(self, name: str):
        """The part, or its Lazy entry while it is not imported: what the config may read of it."""
        return super().__getitem__(name)

    def choose(self, name: str, key: str):
        """The part called `name`; an unknown name is a ConfigError naming `key` and the choices."""
        if name not in self:
            raise ConfigError(f"{key}: unknown {self.kind} {name!r}; choose from {', '.join(self)}")
        return self[name]
