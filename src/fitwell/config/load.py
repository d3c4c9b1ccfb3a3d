"""Load a run config from YAML, a dict or a RunConfig, apply dotted overrides, word the errors."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from fitwell.config.schema import RunConfig
from fitwell.errors import ConfigError, did_you_mean

ConfigLike = str | Path | Mapping[str, Any] | RunConfig

# libyaml's parser and emitter where PyYAML was built with them (its wheels are): the same
# documents, about ten times faster than the pure-Python ones (a resolved config: 37 -> 3.5 ms
# to read, 15 -> 2.5 ms to write)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, through libyaml when PyYAML has it."""
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 -- a safe loader


def parse_value(text: str) -> Any:
    """Type a CLI override value: numbers, booleans, null, lists and dicts as YAML reads them.

    YAML 1.1 reads ``3e-3`` as a string, so numbers are tried first.

    >>> parse_value("3e-3"), parse_value("[64, 32]"), parse_value("true"), parse_value("adam")
    (0.003, [64, 32], True, 'adam')
    """
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    try:
        return parse_yaml(text)
    except yaml.YAMLError:
        return text


def parse_overrides(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """Turn ``["train.lr=3e-3", ...]`` (or a dict) into ``{"train.lr": 0.003, ...}``."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"override {item!r} is not of the form key=value; write for example train.lr=0.001"
            )
        parsed[key.strip()] = parse_value(value.strip())
    return parsed


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each dotted key set to its value.

    A part may index a list by position (``ensemble.members.0.params``) or, in a list of named
    sections, by name (``ensemble.members.lightgbm.params``); an unset (null) section becomes one.

    Raises:
        ConfigError: a key with an empty part, or one that steps into a value.
    """
    raw = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        if not isinstance(dotted, str) or not all(part.strip() for part in dotted.split(".")):
            raise ConfigError(f"override {dotted!r}: a key is dotted names such as train.lr, with no empty"
                              " part")
        node: Any = raw
        parts = dotted.split(".")
        for depth, part in enumerate(parts):
            where = ".".join(parts[: depth + 1])
            last = depth == len(parts) - 1
            if isinstance(node, list):
                position = _list_position(node, part, dotted, where)
                if last:
                    node[position] = value
                    break
                child = node[position]
            else:
                if last:
                    node[part] = value
                    break
                if node.get(part) is None:
                    node[part] = {}
                child = node[part]
            if not isinstance(child, (dict, list)):
                raise ConfigError(f"override {dotted}: {where} is a value, not a section ({child!r})")
            node = child
    return raw


def _list_position(items: list, part: str, dotted: str, where: str) -> int:
    if part.lstrip("-").isdigit():
        position = int(part)
        if not -len(items) <= position < len(items):
            raise ConfigError(f"override {dotted}: {where} is past the end of a list of {len(items)}")
        return position
    names = [item.get("name") for item in items if isinstance(item, dict)]
    if part in names:
        return names.index(part)
    known = ", ".join(str(n) for n in names if n is not None) or "none"
    raise ConfigError(f"override {dotted}: {where}: no list entry named {part!r} (names: {known});"
                      " index a list by position or by an entry's name")


def _fields_at(loc: Sequence[Any]) -> list[str]:
    """Field names of the pydantic model found by walking ``loc`` from RunConfig."""
    model: type[BaseModel] = RunConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


_UNION_TAG = re.compile(r"^(constrained-|literal\[|function-|is-instance|dict\[|list\[|tuple\[|"
                        r"int$|float$|str$|bool$|none$|nullable)")


def _clean_loc(loc: Sequence[Any], extra: bool) -> list[str]:
    """The dotted path of an error, without pydantic's union-branch tags (``float``,
    ``literal['auto']``). The unknown key of an ``extra_forbidden`` error stays whatever its name
    (a key named ``int``), and so does a tag-like part that is a real field at its place."""
    parts = [str(p) for p in loc]
    keep_last = parts[-1:] if extra else []
    out: list[str] = []
    for part in parts[: len(parts) - len(keep_last)]:
        if _UNION_TAG.match(part) and part not in _fields_at(out):
            continue
        out.append(part)
    return out + keep_last


def format_validation_error(err: ValidationError, origin: str) -> str:
    """One line per bad key: ``origin: dotted.key: what (got value). Did you mean ...?``

    Errors from the branches of a union (``lr: float | "auto"``) are merged into one line.
    """
    lines: dict[str, list[str]] = {}
    got_for: dict[str, str] = {}
    for e in err.errors():
        loc = _clean_loc(e["loc"], e["type"] == "extra_forbidden")
        key = ".".join(loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            parent = loc[:-1]
            hint = did_you_mean(loc[-1], _fields_at(parent))
            valid = ", ".join(_fields_at(parent))
            prefix = ".".join(parent) + "." if parent else ""
            hint = hint.replace("'", "'" + prefix, 1) if hint else ""
            lines.setdefault(key, []).append(f"unknown key.{hint} Valid keys here: {valid}")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        if not isinstance(got, dict):
            got_for[key] = f" (got {got!r})"
        lines.setdefault(key, []).append(msg if loc else msg)
    out = []
    for key, messages in lines.items():
        text = "; or ".join(dict.fromkeys(messages))
        if key == "(top level)":
            out.append(f"{origin}: {text}")
        else:
            out.append(f"{origin}: {key}: {text}{got_for.get(key, '')}")
    return "\n".join(out)


def plain_values(value: Any, origin: str, where: str = "") -> Any:
    """The config as plain YAML-able values: NumPy scalars become Python numbers; keys must be
    strings; bytes, strings that are not valid Unicode and other objects are refused by key, so a
    config that loads can always be saved as ``config.yaml`` and loaded back.

    Raises:
        ConfigError: naming the key of the value that cannot be saved.
    """
    key = where or "(top level)"
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                if isinstance(k, (int, float, bool)) and not isinstance(k, bool):
                    k = str(k)  # YAML reads class names such as 1: in class_weights as numbers
                else:
                    raise ConfigError(f"{origin}: {key}: keys must be text (got {k!r})")
            out[k] = plain_values(v, origin, f"{where}.{k}" if where else k)
        return out
    if isinstance(value, (list, tuple)):
        return [plain_values(v, origin, f"{where}.{i}") for i, v in enumerate(value)]
    if hasattr(value, "item") and type(value).__module__ == "numpy" and getattr(value, "ndim", 1) == 0:
        return value.item()
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ConfigError(f"{origin}: {key}: text that is not valid Unicode ({err.reason} at position"
                              f" {err.start}); write it again without that character") from err
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, BaseModel):
        return plain_values(value.model_dump(), origin, where)
    raise ConfigError(f"{origin}: {key}: a config holds text, numbers, booleans, lists and mappings;"
                      f" got {type(value).__name__} {value!r:.60}")


PRESETS = ("fast", "good", "best")


def preset_values(name: str) -> dict[str, Any]:
    """The config values of a preset, as shipped in ``fitwell/presets/<name>.yaml``."""
    return parse_yaml((Path(__file__).resolve().parents[1] / "presets" / f"{name}.yaml").read_text())


def merge_under(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, section by section (a list is replaced whole)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_under(out[key], value)
        else:
            out[key] = value
    return out


def with_preset(raw: dict[str, Any], origin: str) -> dict[str, Any]:
    """A config with ``preset: fast | good | best``: the preset's values under the user's own."""
    name = raw.get("preset")
    if name is None:
        return raw
    if name not in PRESETS:
        raise ConfigError(f"{origin}: preset: unknown preset {name!r}.{did_you_mean(str(name), PRESETS)}"
                          f" Known: {', '.join(PRESETS)} (or leave it out)")
    return merge_under(preset_values(name), raw)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist; check the path")
    hint = "" if path.suffix.lower() in (".yaml", ".yml") else (
        f" -- {path.name} is not a .yaml file: fitwell reads a YAML config, or a table (.csv, .tsv,"
        " .parquet, .jsonl); save a spreadsheet as CSV")
    try:
        raw = parse_yaml(path.read_text()) or {}
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a YAML config (not UTF-8 text){hint}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}{hint}") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got"
                          f" {type(raw).__name__}{hint}")
    return raw


def load_config(
    config: ConfigLike | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
) -> RunConfig:
    """Build a validated RunConfig.

    Args:
        config: a YAML path, a dict of sections, a RunConfig, or None for all defaults.
        overrides: dotted ``key=value`` strings (CLI) or a ``{"train.lr": 1e-3}`` dict.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: naming the file, the dotted key, the bad value and the nearest valid key.

    Example:
        >>> load_config({"data": {"source": "sklearn:iris"}}, ["train.lr=3e-3"]).train.lr
        0.003
    """
    origin = "config"
    if config is None:
        raw: dict[str, Any] = {}
    elif isinstance(config, RunConfig):
        raw = config.model_dump()
    elif isinstance(config, Mapping):
        raw = dict(config)
    else:
        path = Path(config)
        origin = path.name
        raw = read_yaml(path)
    parsed = parse_overrides(overrides)
    raw = with_preset(plain_values(apply_overrides(raw, parsed), origin), origin)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, origin)) from err


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML, loadable by ``load_config``."""
    return yaml.dump(config.model_dump(mode="json"), Dumper=_DUMPER, sort_keys=False)
