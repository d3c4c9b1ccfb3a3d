"""A tabular transformer (FT-Transformer, Gorishniy et al. 2021): every feature becomes a token
(numbers: a learned vector scaled by the value plus a bias; categories: an embedding), a CLS token
is prepended, pre-norm self-attention blocks mix them, and the head reads the CLS token."""

from __future__ import annotations

import math

import torch
from einops import rearrange, repeat
from torch import nn

from fitwell.models.registry import register_model


class NumericTokens(nn.Module):
    """Token of numeric feature j for value x: x * W[j] + b[j]."""

    def __init__(self, num_numeric: int, width: int):
        super().__init__()
        bound = 1 / math.sqrt(width)
        self.weight = nn.Parameter(torch.empty(num_numeric, width).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(num_numeric, width).uniform_(-bound, bound))

    def forward(self, numeric: torch.Tensor) -> torch.Tensor:
        return rearrange(numeric, "b f -> b f 1") * self.weight + self.bias


class CategoryTokens(nn.Module):
    """One embedding table for all coded columns, each column offset into its own range."""

    def __init__(self, cardinalities: list[int], width: int):
        super().__init__()
        offsets = torch.tensor([0, *cardinalities[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.embedding = nn.Embedding(sum(cardinalities), width)
        self.bias = nn.Parameter(torch.zeros(len(cardinalities), width))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.embedding(codes + self.offsets) + self.bias


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product attention; heads split and merged with einops."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b t (three h d) -> three b h t d", three=3, h=self.heads)
        mixed = nn.functional.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.out(rearrange(mixed, "b h t d -> b t (h d)"))


class TransformerBlock(nn.Module):
    """Pre-norm: x + Attention(Norm(x)), then x + FeedForward(Norm(x)); ``dropout`` inside the
    feed-forward, ``residual_dropout`` on each branch before it joins the residual stream."""

    def __init__(self, width: int, heads: int, ffn_factor: float, dropout: float, attention_dropout: float,
                 residual_dropout: float = 0.0):
        super().__init__()
        hidden = max(1, round(width * ffn_factor))
        self.norm_attention = nn.LayerNorm(width)
        self.attention = SelfAttention(width, heads, attention_dropout)
        self.norm_ffn = nn.LayerNorm(width)
        self.ffn = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, width))
        self.dropout = nn.Dropout(residual_dropout) if residual_dropout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.norm_attention(x)))
        return x + self.dropout(self.ffn(self.norm_ffn(x)))


@register_model("tabular_transformer")
class TabularTransformer(nn.Module):
    """Per-feature tokens, a CLS token, ``blocks`` transformer blocks, a head on the CLS token.

    Args:
        num_numeric, cardinalities, out_features: as for every model.
        width: token width (divisible by ``heads``).
        blocks: transformer blocks.
        heads: attention heads (4: heads of 16 at width 64; 8 heads of 8 trained 1.3-1.5x slower on a
            CPU, docs/benchmarks.md).
        ffn_factor: feed-forward width = ``width * ffn_factor``.
        dropout: inside the feed-forward; attention_dropout: on attention weights; residual_dropout:
            on each block's branches (0, FT-Transformer's default: on a CPU every dropout mask is a
            Bernoulli draw over the whole activation, the dearest op of a step).

    Example:
        >>> model = TabularTransformer(num_numeric=3, cardinalities=[4, 6], out_features=2, width=16,
        ...                            blocks=1, heads=4)
        >>> model(torch.zeros(5, 3), torch.ones(5, 2, dtype=torch.long)).shape
        torch.Size([5, 2])
    """

    # what a spec saved before the defaults were written into model.json was built with
    defaults_before_recorded = {"heads": 8, "residual_dropout": 0.1}

    def __init__(self, num_numeric: int, cardinalities: list[int], out_features: int, width: int = 64,
                 blocks: int = 3, heads: int = 4, ffn_factor: float = 4 / 3, dropout: float = 0.1,
                 attention_dropout: float = 0.1, residual_dropout: float = 0.0):
        super().__init__()
        if width % heads:
            from fitwell.errors import ConfigError

            raise ConfigError(f"model.width ({width}) must be divisible by model.heads ({heads})")
        self.numeric_tokens = NumericTokens(num_numeric, width) if num_numeric else None
        self.category_tokens = CategoryTokens(list(cardinalities), width) if cardinalities else None
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.normal_(self.cls, std=0.02)
        self.blocks = nn.Sequential(*(TransformerBlock(width, heads, ffn_factor, dropout, attention_dropout,
                                                       residual_dropout) for _ in range(blocks)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(width, out_features))

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        tokens = [repeat(self.cls, "1 1 d -> b 1 d", b=numeric.shape[0])]
        if self.numeric_tokens is not None:
            tokens.append(self.numeric_tokens(numeric))
        if self.category_tokens is not None:
            tokens.append(self.category_tokens(codes))
        x = self.blocks(torch.cat(tokens, dim=1))
        return self.head(self.norm(x[:, 0]))
