"""The model registry. Every model takes ``(numeric, codes, **inputs)`` batches -- ``inputs`` being
the image / tokens / sequence blocks the data has -- and returns logits. A family says which input
kinds it reads in ``input_kinds`` (default: the table only)."""

from __future__ import annotations

import inspect
from typing import Any

from fitwell.registry import MODELS

register_model = MODELS.register


def model_arguments(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The ``model.*`` settings the family ``name`` takes: unset (None) keys fall back to the
    family's defaults, and keys of other families (``hidden_sizes`` for a transformer) are left
    out, so one config -- or one tuning space over ``model.name`` -- can hold several families.

    Example:
        >>> import fitwell.models
        >>> sorted(model_arguments("resmlp", {"width": 32, "hidden_sizes": [8], "heads": None}))
        ['width']
    """
    factory = MODELS.get(name, "model.name")
    accepted = inspect.signature(factory).parameters
    return {k: v for k, v in settings.items() if v is not None and k in accepted}


def recorded_arguments(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` plus the family's defaults for every argument left out: the spec a run saves
    (``model.json``), so it rebuilds the same network after a default changes."""
    factory = MODELS.get(name, "model.name")
    defaults = {k: p.default for k, p in inspect.signature(factory).parameters.items()
                if p.default is not inspect.Parameter.empty}
    return {**defaults, **kwargs}


def rebuild_model(spec: dict[str, Any]) -> Any:
    """The network a saved spec describes. Specs saved before the defaults were recorded lack some
    arguments; the family's ``defaults_before_recorded`` says what they were then."""
    factory = MODELS.get(spec["name"], "model.name")
    return factory(**{**getattr(factory, "defaults_before_recorded", {}), **spec["kwargs"]})


def input_kinds(name: str) -> frozenset[str]:
    """The input kinds family ``name`` reads: "table", "image", "tokens", "sequence"."""
    return getattr(MODELS.get(name, "model.name"), "input_kinds", frozenset({"table"}))
