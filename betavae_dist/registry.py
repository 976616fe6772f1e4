"""Named, swappable parts: each kind (architecture, objective, dataset, metric, optimiser,
likelihood) is one `Registry` that maps the name used in configs to its implementation.

Config validation reads the allowed names from the registries, so adding a part is one file plus
one line in its registry (or `REGISTRY.register("name")` from your own module, imported before the
entry point runs).
"""

from __future__ import annotations

from .errors import BetaVAEError



class ConfigError(BetaVAEError, ValueError):
    """A configuration problem; the message names the key and its source."""

    exit_code = 2


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

    def choose(self, name: str, key: str):
        """The part called `name`; an unknown name is a ConfigError naming `key` and the choices."""
        if name not in self:
            raise ConfigError(f"{key}: unknown {self.kind} {name!r}; choose from {', '.join(self)}")
        return self[name]
