"""Name -> factory registries: the extension points picked by name in YAML.

A registry owns its names: the config schema checks a name against the registry, and the module
that implements the entries fills it when it is imported. So that the schema (a low layer) can
check names whose factories live in a higher one (the engine, the models), each registry knows its
``provider`` module by name and imports it on the first look-up -- the way plugins announce
themselves through entry points -- without the schema importing the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

from fitwell.errors import ConfigError, did_you_mean


class Registry:
    """Factories by name; refuses duplicates and lists known names on a miss.

    Example:
        >>> losses = Registry("loss")
        >>> @losses.register("double")
        ... def double(): return lambda x: 2 * x
        >>> losses.build("double")(3)
        6
    """

    def __init__(self, kind: str, provider: str | None = None):
        self.kind = kind
        self.provider = provider
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str):
        def add(factory):
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return add

    def _filled(self) -> dict[str, Callable[..., Any]]:
        if self.provider is not None:
            import_module(self.provider)  # its module-level register() calls fill this registry
        return self._factories

    def names(self) -> list[str]:
        return sorted(self._filled())

    def __contains__(self, name: str) -> bool:
        return name in self._filled()

    def check(self, name: str, key: str | None = None, allow_import: bool = False) -> str:
        """``name`` if it is registered (or, with ``allow_import``, a ``module:object`` path);
        else a ConfigError naming ``key`` and the known names."""
        if (allow_import and ":" in name) or name in self:
            return name
        where = f"{key}: " if key else ""
        also = " or 'module:object'" if allow_import else ""
        raise ConfigError(f"{where}unknown {self.kind} {name!r}.{did_you_mean(name, self._filled())}"
                          f" Known: {', '.join(self.names())}{also}")

    def get(self, name: str, key: str | None = None) -> Callable[..., Any]:
        self.check(name, key)
        return self._factories[name]

    def build(self, name: str, key: str | None = None, **kwargs: Any) -> Any:
        return self.get(name, key)(**kwargs)


# The registries of the names a config picks; each is filled by its provider module.
MODELS = Registry("model", provider="fitwell.models")
OPTIMIZERS = Registry("optimizer", provider="fitwell.engine.optim")
LOSSES = Registry("loss", provider="fitwell.engine.losses")
SCHEDULES = Registry("schedule", provider="fitwell.engine.schedules")
CALLBACKS = Registry("callback", provider="fitwell.engine.callbacks")
