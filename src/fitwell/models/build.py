"""Build the configured model for fitted preprocessing: the family must read every input kind the
data has, and its ``model.*`` arguments come from the config."""

from __future__ import annotations

import torch

from fitwell.config.schema import RunConfig
from fitwell.data.preprocess import Preprocessor
from fitwell.errors import ConfigError, UserError
from fitwell.models.registry import MODELS, input_kinds, model_arguments, recorded_arguments


def build_model(config: RunConfig, pre: Preprocessor, task: str,
                numbers: torch.Tensor | None = None) -> tuple[torch.nn.Module, dict]:
    """The configured model for the fitted preprocessing, plus the spec (name + arguments) that
    rebuilds it (``model.json``). ``numbers``: the training rows' number block, for the bins of
    piecewise-linear embeddings (kept in the spec)."""
    out = 1 if task in ("binary", "regression") else len(pre.classes_)
    name = config.model.name
    check_input_kinds(name, pre)
    kwargs = model_arguments(name, config.model.model_dump(exclude={"name"}))
    kwargs.update(num_numeric=pre.num_numeric, cardinalities=pre.cardinalities_, out_features=out)
    if pre.inputs:
        kwargs["inputs"] = pre.input_spec()
    add_number_bins(kwargs, numbers)
    kwargs = recorded_arguments(name, kwargs)
    try:
        model = MODELS.build(name, key="model.name", **kwargs)
    except UserError:
        raise
    except ValueError as err:
        raise ConfigError(f"model ({name}): {err}") from err
    return model, {"name": name, "kwargs": kwargs}


def add_number_bins(kwargs: dict, numbers) -> None:
    """``model.embeddings: piecewise_linear`` needs bin edges from the training rows' numbers."""
    if kwargs.get("embeddings") != "piecewise_linear" or not kwargs.get("num_numeric") or "bins" in kwargs:
        return
    if numbers is None:
        raise ConfigError("model.embeddings piecewise_linear needs the training rows to place its bins;"
                          " this way of building the model has none (use periodic)")
    from fitwell.models.layers import number_bins

    kwargs["bins"] = number_bins(numbers)


def check_input_kinds(name: str, pre: Preprocessor) -> None:
    """The family must read every input kind the data has, and the data must have one it reads."""
    reads = input_kinds(name)
    has = ({"table"} if pre.num_numeric or pre.code_columns_ else set()) | set(pre.input_spec())
    unread = sorted(has - reads)
    if unread:
        fits = [n for n in MODELS.names() if has <= input_kinds(n)]
        raise ConfigError(f"model.name {name!r} reads {', '.join(sorted(reads))}, but the data also has"
                          f" {', '.join(unread)} input; use model.name {' or '.join(fits) or 'combiner'},"
                          " or drop those columns (data.drop)")
    if not has & reads:
        fits = [n for n in MODELS.names() if has and has <= input_kinds(n)]
        raise ConfigError(f"model.name {name!r} reads {', '.join(sorted(reads))}; the data has"
                          f" {', '.join(sorted(has)) or 'no inputs'}. Use model.name {' or '.join(fits)}")
