"""Multi-layer perceptron for tables: numbers plus learned embeddings of coded categories."""

from __future__ import annotations

import torch
from torch import nn

from fitwell.models.layers import ACTIVATIONS, CategoryEmbeddings, NumberEmbeddings, init_linear
from fitwell.models.registry import register_model


@register_model("mlp")
class MLP(nn.Module):
    """Linear -> [BatchNorm] -> activation -> Dropout, repeated, then a linear head.

    Args:
        num_numeric: width of the float input block.
        cardinalities: size of each coded column's vocabulary (code 0 is unknown).
        out_features: 1 for binary or regression, the number of classes otherwise.
        hidden_sizes: width of each hidden layer.
        activation: relu, gelu, silu, leaky_relu, tanh or sigmoid.
        dropout: drop probability after each hidden layer.
        batch_norm: add BatchNorm1d before each activation.
        embedding_dim: the widest embedding any coded column gets.
        embeddings: ``none`` (numbers go in as they are), ``periodic`` or ``piecewise_linear``
            (each number mapped to ``number_embedding_dim`` features; Gorishniy et al., 2022).
        bins: piecewise_linear's bin edges per number column (fitwell computes them from the
            training rows and keeps them in model.json).
        number_embedding_dim: the width of each number's embedding.

    Example:
        >>> model = MLP(num_numeric=4, cardinalities=[], out_features=3, hidden_sizes=[8])
        >>> model(torch.zeros(2, 4), torch.zeros(2, 0, dtype=torch.long)).shape
        torch.Size([2, 3])
    """

    def __init__(self, num_numeric: int, cardinalities: list[int], out_features: int,
                 hidden_sizes: list[int] = (128, 64), activation: str = "relu",
                 dropout: float = 0.1, batch_norm: bool = False, embedding_dim: int = 16,
                 embeddings: str = "none", bins: list[list[float]] | None = None,
                 number_embedding_dim: int = 8):
        super().__init__()
        self.embeddings = CategoryEmbeddings(list(cardinalities), embedding_dim) if cardinalities else None
        self.numbers = None
        if embeddings != "none" and num_numeric:
            self.numbers = NumberEmbeddings(embeddings, num_numeric, number_embedding_dim, bins)
        width = (self.numbers.out_features if self.numbers else num_numeric) + (
            self.embeddings.out_features if self.embeddings else 0)
        layers: list[nn.Module] = []
        for size in hidden_sizes:
            linear = nn.Linear(width, size)
            init_linear(linear, activation)
            layers.append(linear)
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        self.body = nn.Sequential(*layers)
        self.features_out = width
        self.head = nn.Linear(width, out_features)

    def encode(self, numeric: torch.Tensor, codes: torch.Tensor, **_) -> torch.Tensor:
        if self.numbers is not None:
            numeric = self.numbers(numeric)
        if self.embeddings is not None:
            numeric = torch.cat([numeric, self.embeddings(codes)], dim=1)
        return self.body(numeric)

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(numeric, codes))
