"""Building blocks shared by model families: activations with fitting initialisation, embeddings."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def init_linear(layer: nn.Linear, activation: str) -> None:
    """He initialisation for ReLU-like activations, Glorot for saturating ones."""
    if activation in ("tanh", "sigmoid"):
        gain = nn.init.calculate_gain(activation)
        nn.init.xavier_uniform_(layer.weight, gain=gain)
    else:
        slope = 0.01 if activation == "leaky_relu" else 0.0
        nn.init.kaiming_uniform_(layer.weight, a=slope, nonlinearity="leaky_relu")
    nn.init.zeros_(layer.bias)


def embedding_width(cardinality: int, cap: int) -> int:
    """fastai's rule of thumb, capped: 1.6 * n ** 0.56."""
    return max(1, min(cap, round(1.6 * cardinality**0.56)))


class CategoryEmbeddings(nn.Module):
    """One embedding table per coded column (code 0 = unknown), outputs concatenated."""

    def __init__(self, cardinalities: list[int], cap: int):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(n, embedding_width(n, cap)) for n in cardinalities)
        self.out_features = sum(t.embedding_dim for t in self.tables)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.cat([table(codes[:, i]) for i, table in enumerate(self.tables)], dim=1)
