"""Name -> factory registries: the extension points picked by name in YAML."""

from __future__ import annotations

from collections.abc import Callable
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

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str):
        def add(factory):
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return add

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: str) -> bool:
        return name in self._factories

    def get(self, name: str, key: str | None = None) -> Callable[..., Any]:
        if name not in self._factories:
            where = f"{key}: " if key else ""
            raise ConfigError(
                f"{where}unknown {self.kind} {name!r}.{did_you_mean(name, self._factories)}"
                f" Known: {', '.join(self.names())}"
            )
        return self._factories[name]

    def build(self, name: str, key: str | None = None, **kwargs: Any) -> Any:
        return self.get(name, key)(**kwargs)
