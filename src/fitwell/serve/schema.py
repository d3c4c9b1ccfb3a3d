"""The input columns a run's model reads, as a schema: what ``GET /schema`` shows and what the
server's request model is generated from (a missing column, a wrong type or an unknown field gets
a 422 that names it)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, create_model

from fitwell.data.preprocess import MISSING, Preprocessor

# JSON types each column kind accepts; null is a missing value (the run imputes it)
NUMBER = float | None
CATEGORY = str | int | float | bool | None  # categories are matched as the training text was
TEXT = str | None


def column_schema(pre: Preprocessor) -> list[dict[str, Any]]:
    """One entry per input column: name, kind (number, category, boolean, date, or the input block's
    kind: text, image, sequence), its JSON type and, for categories, the values seen in training
    (after fitwell's string normalisation; others go to the unknown bucket)."""
    seen = training_categories(pre)
    columns = []
    for name, kind in pre.plan.kinds.items():
        if name in pre.plan.dates:  # sent as text, read as days since 1970
            columns.append({"name": name, "kind": "date", "type": "string"})
            continue
        entry: dict[str, Any] = {"name": name, "kind": "number" if kind == "numeric" else
                                 "category" if kind == "categorical" else kind,
                                 "type": "number" if kind == "numeric" else "string"}
        if name in seen:
            entry["categories"] = seen[name]
        columns.append(entry)
    for block in pre.inputs:
        columns.extend({"name": column, "kind": block.key, "type": "string"} for column in block.columns_)
    return columns


def training_categories(pre: Preprocessor) -> dict[str, list]:
    """The category values each categorical column had in training."""
    seen: dict[str, list] = {}
    if pre.onehot_columns_ and pre.numeric_ is not None:
        encoder = pre.numeric_.named_transformers_["onehot"].named_steps["encode"]
        seen.update(zip(pre.onehot_columns_, encoder.categories_, strict=True))
    if pre.codes_ is not None:
        seen.update(zip(pre.code_columns_, pre.codes_.categories_, strict=True))
    return {name: [plain(v) for v in values if not (isinstance(v, str) and v == MISSING) and v == v]
            for name, values in seen.items()}


def plain(value):
    """A numpy scalar as the JSON value it stands for."""
    return value.item() if isinstance(value, np.generic) else value


def row_model(columns: list[dict[str, Any]], ignored: dict[str, str] | None = None) -> type[BaseModel]:
    """A pydantic model of one row: every column required (null = missing), nothing else allowed
    but the ``ignored`` columns (those training dropped: an ID, a constant) which may come along.
    Fields are named by position and aliased to the column, so any column name works (``json``,
    ``model_id``, names with spaces) and errors name the column."""
    fields: dict[str, Any] = {}
    for i, column in enumerate(columns):
        kind = column["kind"]
        annotation = NUMBER if kind == "number" else CATEGORY if kind in ("category", "boolean") else TEXT
        fields[f"column_{i}"] = (annotation, Field(..., alias=column["name"], description=f"{kind} column"))
    for i, (name, why) in enumerate((ignored or {}).items()):
        fields[f"ignored_{i}"] = (Any, Field(None, alias=name, description=f"not used: {why}"))
    return create_model("Row", __config__=ConfigDict(extra="forbid", protected_namespaces=()), **fields)
