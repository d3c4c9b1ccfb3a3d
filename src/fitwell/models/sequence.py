"""Models for token ids (text) and numeric sequences: recurrent networks and a transformer encoder.

Both read ``tokens`` (int64, 0 = padding) through an embedding, or ``sequence`` (float32
``(rows, length, features)``) through a linear projection, with ``sequence_mask`` marking real steps.
"""

from __future__ import annotations

import torch
from torch import nn

from fitwell.models.layers import EncoderHead, needs_input
from fitwell.models.registry import register_model


class StepEmbedding(nn.Module):
    """Token ids or numeric steps -> ``(rows, length, width)`` vectors and a mask of real steps."""

    def __init__(self, family: str, inputs: dict | None, width: int):
        super().__init__()
        spec = needs_input(family, inputs, "tokens", "sequence")
        self.kind = "tokens" if inputs and "tokens" in inputs else "sequence"
        self.length = spec["length"]
        if self.kind == "tokens":
            self.embed = nn.Embedding(spec["vocab_size"], width, padding_idx=0)
        else:
            self.embed = nn.Linear(spec["features"], width)

    def forward(self, tokens=None, sequence=None, sequence_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "tokens":
            return self.embed(tokens), tokens != 0
        return self.embed(sequence), sequence_mask


@register_model("rnn")
class RNN(EncoderHead):
    """An RNN, LSTM or GRU (uni- or bidirectional) over the real steps of each row (packed, so the
    padding is never read); the final hidden state(s) of the top layer feed the head.

    Args:
        inputs: the input spec with ``tokens`` or ``sequence``.
        cell: rnn, lstm or gru.
        width: embedding and hidden width.
        blocks: stacked recurrent layers.
        bidirectional: also read each row backwards (the two final states are concatenated).
        dropout: between layers and before the head.

    Example:
        >>> model = RNN(0, [], 2, {"tokens": {"vocab_size": 50, "length": 6}}, cell="gru", width=8)
        >>> model(None, None, tokens=torch.tensor([[2, 7, 9, 3, 0, 0]])).shape
        torch.Size([1, 2])
    """

    input_kinds = frozenset({"tokens", "sequence"})

    def __init__(
        self,
        num_numeric: int,
        cardinalities: list[int],
        out_features: int,
        inputs: dict | None = None,
        cell: str = "lstm",
        width: int = 64,
        blocks: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.embedding = StepEmbedding("rnn", inputs, width)
        layer = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = layer(
            width,
            width,
            num_layers=blocks,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if blocks > 1 else 0.0,
        )
        self.directions = 2 if bidirectional else 1
        self.dropout = nn.Dropout(dropout)
        self.features_out = width * self.directions
        self.head = nn.Linear(self.features_out, out_features)

    def encode(
        self, numeric=None, codes=None, tokens=None, sequence=None, sequence_mask=None, **_
    ) -> torch.Tensor:
        steps, mask = self.embedding(tokens, sequence, sequence_mask)
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(steps, lengths, batch_first=True, enforce_sorted=False)
        _, hidden = self.rnn(packed)
        if isinstance(hidden, tuple):  # LSTM: (h, c)
            hidden = hidden[0]
        last = hidden[-self.directions :]  # the top layer, each direction: (directions, rows, width)
        return self.dropout(torch.cat(list(last), dim=1))


@register_model("transformer")
class SequenceTransformer(EncoderHead):
    """A transformer encoder (pre-norm, GELU) over embedded steps plus learned positions; a CLS
    token gathers the row for the head; padded steps are masked out of attention.

    Args:
        inputs: the input spec with ``tokens`` or ``sequence``.
        width: model width (divisible by ``heads``).
        blocks: encoder layers.
        heads: attention heads.
        ffn_factor: feed-forward width = width * ffn_factor.
        dropout, attention_dropout: dropout in the layers (PyTorch's layer uses one rate for both;
            the larger is used).

    Example:
        >>> spec = {"sequence": {"features": 2, "length": 5}}
        >>> model = SequenceTransformer(0, [], 3, spec, width=8, heads=2)
        >>> mask = torch.ones(4, 5, dtype=torch.bool)
        >>> model(None, None, sequence=torch.zeros(4, 5, 2), sequence_mask=mask).shape
        torch.Size([4, 3])
    """

    input_kinds = frozenset({"tokens", "sequence"})

    def __init__(
        self,
        num_numeric: int,
        cardinalities: list[int],
        out_features: int,
        inputs: dict | None = None,
        width: int = 64,
        blocks: int = 2,
        heads: int = 4,
        ffn_factor: float = 2.0,
        dropout: float = 0.1,
        attention_dropout: float = 0.1,
    ):
        super().__init__()
        if width % heads:
            raise ValueError(f"model.width ({width}) must be divisible by model.heads ({heads})")
        self.embedding = StepEmbedding("transformer", inputs, width)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.position = nn.Parameter(torch.randn(1, self.embedding.length + 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width,
            heads,
            int(width * ffn_factor),
            max(dropout, attention_dropout),
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.features_out = width
        self.head = nn.Linear(width, out_features)

    def encode(
        self, numeric=None, codes=None, tokens=None, sequence=None, sequence_mask=None, **_
    ) -> torch.Tensor:
        steps, mask = self.embedding(tokens, sequence, sequence_mask)
        rows = steps.shape[0]
        steps = (
            torch.cat([self.cls.expand(rows, -1, -1), steps], dim=1) + self.position[:, : steps.shape[1] + 1]
        )
        padding = torch.cat([torch.zeros(rows, 1, dtype=torch.bool, device=mask.device), ~mask], dim=1)
        return self.norm(self.encoder(steps, src_key_padding_mask=padding)[:, 0])
