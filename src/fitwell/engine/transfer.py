"""Transfer learning: start from earlier weights, freeze the backbone, unfreeze it gradually, and
give backbone and head their own learning rates.

Every model family names its output layer ``head``; everything else is the backbone. Weights are
matched by name and shape, and the report says what loaded and what did not (a new head for a
different number of classes is the usual, expected miss).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fitwell.engine.callbacks.base import Callback
from fitwell.errors import ConfigError

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def read_weights(source: str | Path) -> dict[str, torch.Tensor]:
    """Tensors by name from a fitwell run directory, a safetensors file or a PyTorch file
    (read with ``weights_only=True``: no code in the file runs).

    Raises:
        ConfigError: the path is missing or holds no tensors (``transfer.weights``).
    """
    path = Path(source)
    if path.is_dir():
        if not (path / "model.safetensors").exists():
            raise ConfigError(
                f"transfer.weights: {path} is a folder without model.safetensors; give a"
                " finished fitwell run directory or a weights file"
            )
        path = path / "model.safetensors"
    if not path.exists():
        raise ConfigError(
            f"transfer.weights: {path} does not exist; give a fitwell run directory or a"
            f" {'/'.join(WEIGHT_SUFFIXES)} file"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have many types
        raise ConfigError(
            f"transfer.weights: {path} could not be read as a PyTorch state dict ({err})"
        ) from err
    for key in ("state_dict", "model", "model_state_dict"):  # common checkpoint layouts
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    tensors = (
        {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)} if isinstance(loaded, dict) else {}
    )
    if not tensors:
        raise ConfigError(f"transfer.weights: {path} holds no tensors by name")
    return {k.removeprefix("module."): v for k, v in tensors.items()}  # DDP-saved names


def is_head(name: str) -> bool:
    return name == "head" or name.startswith("head.")


def load_matching(model: nn.Module, weights: dict[str, torch.Tensor], load_head: bool = False) -> dict:
    """Copy every tensor whose name and shape match into ``model``; report the rest. The head is
    left new unless ``load_head`` (a new task gets a new head, as timm resets ``num_classes``).

    Returns:
        ``{"loaded": [...], "shape_mismatch": {name: [file shape, model shape]}, "missing": [...]
        (in the model, not in the file), "unused": [...] (in the file only), "new_head": [...],
        "backbone_loaded_share"}``.
    """
    own = model.state_dict()
    loaded, mismatch = [], {}
    new_head = [n for n in own if is_head(n)] if not load_head else []
    for name, tensor in weights.items():
        if name in new_head:
            continue
        if name in own:
            if tuple(own[name].shape) == tuple(tensor.shape):
                loaded.append(name)
            else:
                mismatch[name] = [list(tensor.shape), list(own[name].shape)]
    model.load_state_dict({name: weights[name] for name in loaded}, strict=False)
    backbone = [n for n in own if not is_head(n)]
    done = set(loaded)
    return {
        "loaded": loaded,
        "shape_mismatch": mismatch,
        "new_head": new_head,
        "missing": [n for n in own if n not in done and n not in mismatch and n not in new_head],
        "unused": [n for n in weights if n not in own],
        "backbone_loaded_share": sum(n in done for n in backbone) / max(len(backbone), 1),
    }


def describe(report: dict) -> str:
    """One line for the console and the HTML report: what ``transfer.json`` says was loaded.

    Example:
        >>> describe({"source": "runs/a", "loaded": ["x"], "backbone_loaded_share": 1.0,
        ...           "shape_mismatch": {}, "missing": [], "new_head": ["head.weight"]})
        'loaded 1 tensors from runs/a (100% of the backbone); 0 left as initialised, new head'
    """
    mismatch = report["shape_mismatch"]
    return (f"loaded {len(report['loaded'])} tensors from {report['source']}"
            f" ({report['backbone_loaded_share']:.0%} of the backbone);"
            f" {len(mismatch) + len(report['missing'])} left as initialised"
            + (", new head" if report["new_head"] else "")
            + (f" ({', '.join(list(mismatch)[:4])}: other shape)" if mismatch else "")
            + (f"; {report['loaded_by']} adapted {', '.join(report['adapted'])}"
               if report.get("adapted") else ""))


def layer_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """The backbone's top-level children with parameters, input side first (the head excluded);
    a family with one big pretrained child (timm, MiniLM) gives its own ``backbone_groups()``."""
    if hasattr(model, "backbone_groups"):
        return model.backbone_groups()
    groups = []
    for name, child in model.named_children():
        params = [p for p in child.parameters()]
        if not is_head(name) and params:
            groups.append(params)
    loose = [p for name, p in model.named_parameters(recurse=False) if not is_head(name)]
    if loose:  # parameters held by the model itself (a CLS token, positions): with the input side
        groups.insert(0, loose)
    return groups


def backbone_parameters(model: nn.Module) -> set[int]:
    return {id(p) for name, p in model.named_parameters() if not is_head(name)}


def frozen_groups(epoch: int, num_groups: int, freeze: str, unfreeze_every: int | None) -> int:
    """How many backbone groups (from the input side) stay frozen during 0-based ``epoch``.

    Example:
        >>> [frozen_groups(e, 3, "backbone", 2) for e in range(8)]
        [3, 3, 2, 2, 1, 1, 0, 0]
    """
    if freeze != "backbone":
        return 0
    if unfreeze_every is None:
        return num_groups
    return max(0, num_groups - epoch // unfreeze_every)


class BackboneFreezing(Callback):
    """Freezes the backbone and, with ``unfreeze_every``, unfreezes one layer group every n epochs,
    from the head down (ULMFiT's gradual unfreezing). The frozen set is a function of the epoch, so
    a resumed run freezes exactly what the uninterrupted one did."""

    order = -5

    def __init__(self, model: nn.Module, freeze: str, unfreeze_every: int | None):
        self.groups = layer_groups(model)
        self.freeze, self.unfreeze_every = freeze, unfreeze_every
        self.frozen_log: list[int] = []

    def on_epoch_start(self, trainer, state) -> None:
        frozen = frozen_groups(state.epoch, len(self.groups), self.freeze, self.unfreeze_every)
        for i, group in enumerate(self.groups):
            for param in group:
                param.requires_grad_(i >= frozen)
        self.frozen_log.append(frozen)


def discriminative_groups(optimizer: torch.optim.Optimizer, model: nn.Module, factor: float) -> None:
    """Split each parameter group into backbone and head parts; the backbone's rate is ``lr * factor``."""
    if factor == 1.0:
        return
    backbone = backbone_parameters(model)
    groups = []
    for group in optimizer.param_groups:
        base = {k: v for k, v in group.items() if k != "params"}
        back = [p for p in group["params"] if id(p) in backbone]
        head = [p for p in group["params"] if id(p) not in backbone]
        if back:
            groups.append({**base, "params": back, "lr": group["lr"] * factor})
        if head:
            groups.append({**base, "params": head})
    optimizer.param_groups.clear()
    for group in groups:
        optimizer.add_param_group(group)
