"""One model over several input kinds: a table, an image, a text or a numeric sequence."""

from __future__ import annotations

import torch
from torch import nn

from fitwell.models.cnn import CNN
from fitwell.models.layers import ACTIVATIONS
from fitwell.models.mlp import MLP
from fitwell.models.registry import register_model
from fitwell.models.sequence import RNN, SequenceTransformer


@register_model("combiner")
class Combiner(nn.Module):
    """Late fusion: an encoder per input kind -- an MLP for the table, a CNN for the image, an RNN
    or transformer for text or a sequence -- whose features are concatenated and mixed by a hidden
    layer before the head.

    Args:
        num_numeric, cardinalities: the table's blocks (none: no table encoder).
        out_features: 1 for binary or regression, the number of classes otherwise.
        inputs: the input spec (``image``, ``tokens``, ``sequence``).
        hidden_sizes: the table encoder's layers; the last size is also the fusion layer's width.
        channels: the image encoder's stages.
        text_encoder: rnn or transformer, for ``tokens`` / ``sequence``.
        cell, width, blocks, heads, bidirectional: the text encoder's settings.

    Example:
        >>> spec = {"image": {"shape": [1, 8, 8], "mean": [0.5], "std": [0.2]}}
        >>> model = Combiner(3, [], 2, spec, hidden_sizes=[8], channels=[4])
        >>> model(torch.zeros(5, 3), torch.zeros(5, 0, dtype=torch.long), image=torch.rand(5, 1, 8, 8)).shape
        torch.Size([5, 2])
    """

    input_kinds = frozenset({"table", "image", "tokens", "sequence"})

    def __init__(
        self,
        num_numeric: int,
        cardinalities: list[int],
        out_features: int,
        inputs: dict | None = None,
        hidden_sizes: list[int] = (64,),
        channels: list[int] = (32, 64),
        text_encoder: str = "rnn",
        cell: str = "gru",
        width: int = 64,
        blocks: int = 1,
        heads: int = 4,
        bidirectional: bool = False,
        activation: str = "relu",
        dropout: float = 0.1,
        embedding_dim: int = 16,
    ):
        super().__init__()
        inputs = inputs or {}
        encoders: dict[str, nn.Module] = {}
        if num_numeric or cardinalities:
            encoders["table"] = MLP(
                num_numeric, cardinalities, 1, hidden_sizes, activation, dropout, embedding_dim=embedding_dim
            )
        if "image" in inputs:
            encoders["image"] = CNN(0, [], 1, {"image": inputs["image"]}, channels, activation, dropout)
        for key in ("tokens", "sequence"):
            if key in inputs:
                spec = {key: inputs[key]}
                encoders[key] = (
                    RNN(0, [], 1, spec, cell, width, blocks, bidirectional, dropout)
                    if text_encoder == "rnn"
                    else SequenceTransformer(0, [], 1, spec, width, blocks, heads, dropout=dropout)
                )
        if len(encoders) < 2:
            raise ValueError(
                f"the combiner fuses several input kinds; the data has only {list(encoders)}."
                " Use the family made for it (mlp, cnn, rnn, transformer)"
            )
        for encoder in encoders.values():
            encoder.head = nn.Identity()  # only the features are used
        self.encoders = nn.ModuleDict(encoders)
        total = sum(e.features_out for e in encoders.values())
        fused = hidden_sizes[-1] if hidden_sizes else 64
        self.fuse = nn.Sequential(nn.Linear(total, fused), ACTIVATIONS[activation](), nn.Dropout(dropout))
        self.head = nn.Linear(fused, out_features)

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor, **inputs) -> torch.Tensor:
        parts = [encoder.encode(numeric, codes, **inputs) for encoder in self.encoders.values()]
        return self.head(self.fuse(torch.cat(parts, dim=1)))
