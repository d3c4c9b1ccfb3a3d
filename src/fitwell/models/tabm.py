"""TabM (Gorishniy et al., 2025): k MLPs that share most of their weights (BatchEnsemble), each
trained on its own loss, averaged at prediction -- the ``tabm`` package's model, with periodic
embeddings of the numbers (Gorishniy et al., 2022; ``rtdl-num-embeddings``).

In training mode the family returns ``(rows, k, out)``: fitwell's losses read a 3-d output as k
heads and average their losses, so every head learns on its own. In eval mode it returns the mean
of the k heads, ``(rows, out)``, like every other family.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from fitwell.models.layers import number_embedding
from fitwell.models.registry import register_model


@register_model("tabm")
class TabM(nn.Module):
    """TabM for tables: numbers (optionally embedded) and one-hot coded categories.

    Args:
        num_numeric, cardinalities, out_features: as for every family.
        ensemble_size: k, the heads trained side by side (the paper's default is 32; 16 here fits
            a CPU).
        width: the width of each block (d_block).
        blocks: the number of blocks.
        dropout: dropout inside the blocks.
        embeddings: ``periodic`` (the numbers through learned periodic features),
            ``piecewise_linear`` (quantile bins of the training rows, ``bins``) or ``none``.
        bins: piecewise_linear's bin edges per number column (computed by fitwell).

    Example:
        >>> model = TabM(num_numeric=4, cardinalities=[3], out_features=2, ensemble_size=4, width=16)
        >>> model(torch.zeros(5, 4), torch.zeros(5, 1, dtype=torch.long)).shape  # training: k heads
        torch.Size([5, 4, 2])
        >>> model.eval()(torch.zeros(5, 4), torch.zeros(5, 1, dtype=torch.long)).shape
        torch.Size([5, 2])
    """

    input_kinds = frozenset({"table"})

    def __init__(self, num_numeric: int, cardinalities: list[int], out_features: int,
                 ensemble_size: int = 16, width: int = 256, blocks: int = 2, dropout: float = 0.1,
                 embeddings: Literal["periodic", "piecewise_linear", "none"] = "periodic",
                 bins: list[list[float]] | None = None):
        super().__init__()
        import tabm

        # output_heads: the training output is (rows, output_heads, out) -- fitwell's losses read it
        self.num_numeric, self.num_coded, self.output_heads = num_numeric, len(cardinalities), ensemble_size
        numbers = None
        if embeddings != "none" and num_numeric:  # periodic 24 wide (the package's default), PLE 16
            numbers = number_embedding(embeddings, num_numeric, 24 if embeddings == "periodic" else 16, bins)
        self.net = tabm.TabM.make(n_num_features=num_numeric, cat_cardinalities=list(cardinalities) or None,
                                  d_out=out_features, num_embeddings=numbers, k=ensemble_size,
                                  d_block=width, n_blocks=blocks, dropout=dropout)

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        out = self.net(numeric if self.num_numeric else None, codes if self.num_coded else None)
        return out if self.training else out.mean(dim=1)
