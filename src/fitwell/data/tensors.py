"""Row-aligned tensor blocks (``TensorData``) and what slices them: after preprocessing the data
becomes these tensors once, and a batch is an index slice of them, not a list of collated rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn


@dataclass
class TensorData:
    """Row-aligned tensors: the number block, the code block, the target, optional row weights,
    and the other input blocks by name (``image``, ``tokens``, ``sequence``, ``sequence_mask``),
    passed to the model as keyword arguments."""

    numeric: torch.Tensor
    codes: torch.Tensor
    target: torch.Tensor
    weight: torch.Tensor | None = None
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    out_of_core: bool = False  # memory-mapped blocks: read in slices, never gathered whole

    def __len__(self) -> int:
        return self.numeric.shape[0]

    def to(self, device: torch.device | str) -> TensorData:
        if self.out_of_core:  # stays mapped on the CPU; batches move to the device one by one
            return self
        weight = None if self.weight is None else self.weight.to(device)
        return TensorData(self.numeric.to(device), self.codes.to(device), self.target.to(device), weight,
                          {k: v.to(device) for k, v in self.inputs.items()})

    def select(self, rows: torch.Tensor | np.ndarray) -> TensorData:
        """The given rows of every block (an index tensor or array)."""
        rows = torch.as_tensor(rows, device=self.numeric.device)
        return TensorData(self.numeric[rows], self.codes[rows], self.target[rows],
                          None if self.weight is None else self.weight[rows],
                          {k: v[rows] for k, v in self.inputs.items()})

    def concat(self, other: TensorData) -> TensorData:
        """These rows followed by ``other``'s, block by block."""
        weight = None if self.weight is None else torch.cat([self.weight, other.weight])
        return TensorData(torch.cat([self.numeric, other.numeric]), torch.cat([self.codes, other.codes]),
                          torch.cat([self.target, other.target]), weight,
                          {k: torch.cat([v, other.inputs[k]]) for k, v in self.inputs.items()})

    @classmethod
    def from_numpy(cls, numeric: np.ndarray, codes: np.ndarray, target: np.ndarray,
                   weight: np.ndarray | None = None,
                   inputs: dict[str, np.ndarray] | None = None) -> TensorData:
        return cls(torch.from_numpy(numeric), torch.from_numpy(codes), torch.from_numpy(target),
                   None if weight is None else torch.from_numpy(weight),
                   {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in (inputs or {}).items()})



class RowsInOrder:
    """A block read in a given row order one slice at a time: ``rows[a:b]`` gathers rows
    ``order[a:b]`` (from a memory map, only those pages), on ``device`` when given."""

    def __init__(self, block: torch.Tensor, order: torch.Tensor, device: torch.device | None = None):
        self.block, self.order, self.device = block, order, device

    def __getitem__(self, index: slice) -> torch.Tensor:
        rows = self.block[self.order[index]]
        return rows if self.device is None else rows.to(self.device, non_blocking=True)


@torch.inference_mode()
def predict_in_chunks(module: nn.Module, data: TensorData, device: torch.device | str = "cpu",
                      chunk: int = 512) -> torch.Tensor:
    """``module``'s outputs in eval mode over every row of ``data``; its mode is restored after."""
    was_training = module.training
    module.eval()
    try:
        parts = [module(data.numeric[i:i + chunk].to(device), data.codes[i:i + chunk].to(device),
                        **{k: v[i:i + chunk].to(device) for k, v in data.inputs.items()})
                 for i in range(0, len(data), chunk)]
    finally:
        module.train(was_training)
    if not parts:
        return torch.zeros(0)
    return torch.cat(parts).float()
