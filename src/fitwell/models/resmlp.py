"""Residual MLP for tables: pre-norm blocks with skip connections (Gorishniy et al. 2021,
"Revisiting Deep Learning Models for Tabular Data": the ResNet baseline)."""

from __future__ import annotations

import torch
from torch import nn

from fitwell.models.layers import ACTIVATIONS, CategoryEmbeddings, init_linear
from fitwell.models.registry import register_model


class ResidualBlock(nn.Module):
    """x + Dropout(Linear(Dropout(act(Linear(Norm(x))))))."""

    def __init__(self, width: int, hidden: int, activation: str, dropout: float, batch_norm: bool):
        super().__init__()
        self.norm = nn.BatchNorm1d(width) if batch_norm else nn.LayerNorm(width)
        self.expand = nn.Linear(width, hidden)
        init_linear(self.expand, activation)
        self.activation = ACTIVATIONS[activation]()
        self.drop_hidden = nn.Dropout(dropout)
        self.project = nn.Linear(hidden, width)
        self.drop_out = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_out(self.project(self.drop_hidden(self.activation(self.expand(self.norm(x))))))


@register_model("resmlp")
class ResMLP(nn.Module):
    """Input projection, ``blocks`` residual blocks of width ``width`` (expanded ``ffn_factor``
    times inside), a final norm and activation, and a linear head.

    Args:
        num_numeric, cardinalities, out_features: as for every model.
        width: the residual stream's width.
        blocks: number of residual blocks.
        ffn_factor: hidden width of a block = ``width * ffn_factor``.
        activation, dropout, batch_norm (BatchNorm instead of LayerNorm), embedding_dim.

    Example:
        >>> model = ResMLP(num_numeric=4, cardinalities=[5], out_features=3, width=16, blocks=2)
        >>> model(torch.zeros(2, 4), torch.ones(2, 1, dtype=torch.long)).shape
        torch.Size([2, 3])
    """

    def __init__(self, num_numeric: int, cardinalities: list[int], out_features: int, width: int = 128,
                 blocks: int = 3, ffn_factor: float = 2.0, activation: str = "relu", dropout: float = 0.1,
                 batch_norm: bool = False, embedding_dim: int = 16):
        super().__init__()
        self.embeddings = CategoryEmbeddings(list(cardinalities), embedding_dim) if cardinalities else None
        inputs = num_numeric + (self.embeddings.out_features if self.embeddings else 0)
        self.project = nn.Linear(inputs, width)
        self.blocks = nn.Sequential(*(ResidualBlock(width, max(1, round(width * ffn_factor)), activation,
                                                    dropout, batch_norm) for _ in range(blocks)))
        self.norm = nn.BatchNorm1d(width) if batch_norm else nn.LayerNorm(width)
        self.activation = ACTIVATIONS[activation]()
        self.head = nn.Linear(width, out_features)

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        if self.embeddings is not None:
            numeric = torch.cat([numeric, self.embeddings(codes)], dim=1)
        return self.head(self.activation(self.norm(self.blocks(self.project(numeric)))))
