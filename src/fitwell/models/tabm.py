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
        if self.net.cat_module is not None:
            self.net.cat_module = OneHotCodes(list(cardinalities))

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        # the package's TabM.forward for 2-d inputs, step by step: its torch.column_stack of the
        # feature blocks and its len(x) batch check keep torch.onnx from exporting the model
        # (tests/models/test_tabm.py checks this gives the package's outputs)
        net, blocks = self.net, []
        if self.num_numeric:
            blocks.append(numeric if net.num_module is None else net.num_module(numeric).flatten(1))
        if self.num_coded:
            blocks.append(net.cat_module(codes))
        out = net.backbone(net.ensemble_view(torch.cat(blocks, dim=1)))
        if net.output is not None:
            out = net.output(out)
        return out if self.training else out.mean(dim=1)


class OneHotCodes(nn.Module):
    """The ``tabm`` package's one-hot of the category codes as float32 rather than int64 -- the
    package stacks it beside the float number features, which promotes it to float anyway -- so that
    ``torch.onnx`` exports the model: stacking int64 beside float32 became an ONNX sequence of mixed
    element types that onnxruntime refuses to load. No parameters: saved weights are unchanged.

    Example:
        >>> OneHotCodes([3, 2])(torch.tensor([[2, 0], [0, 1]])).tolist()
        [[0.0, 0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0, 1.0]]
    """

    def __init__(self, cardinalities: list[int]):
        super().__init__()
        self.cardinalities = cardinalities

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.cat([(codes[..., i:i + 1] == torch.arange(size, device=codes.device)).float()
                          for i, size in enumerate(self.cardinalities)], dim=-1)
