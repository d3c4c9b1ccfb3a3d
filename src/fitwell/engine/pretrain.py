"""Self-supervised pretraining for tables (``pretrain``): the supervised run's own network, with a
head as wide as the number block, learns to rebuild each row's numbers from a corrupted copy --
masked features (a share of the numbers swapped for another row's, as VIME and SCARF corrupt)
or Gaussian noise -- on the training rows and any unlabelled rows of ``pretrain.source``. Its
backbone then starts the supervised training (the head stays new), through the same weight
matching as ``transfer.weights``; freezing, gradual unfreezing and discriminative rates apply.

The preprocessing is the supervised run's, fitted on its training rows only; the unlabelled
rows are transformed by it, never fitted on, and the validation rows only watch the pretraining.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from fitwell.data.tensors import TensorData
from fitwell.errors import ConfigError


class Corrupted(nn.Module):
    """``network`` fed a corrupted copy of the numbers; in evaluation the corruption is drawn from a
    fixed generator, so the validation loss compares epochs on the same masks."""

    def __init__(self, network: nn.Module, objective: str, share: float, noise: float):
        super().__init__()
        self.network, self.objective, self.share, self.noise = network, objective, share, noise

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        generator = None
        if not self.training:
            generator = torch.Generator(device=numeric.device).manual_seed(len(numeric))
        if self.objective == "denoising":
            noise = torch.randn(numeric.shape, generator=generator, device=numeric.device)
            return self.network(numeric + self.noise * noise, codes)
        mask = torch.rand(numeric.shape, generator=generator, device=numeric.device) < self.share
        donors = torch.randint(len(numeric), (len(numeric),), generator=generator, device=numeric.device)
        return self.network(torch.where(mask, numeric[donors], numeric), codes)


def unlabelled_rows(source: str, preprocessor) -> TensorData:
    """``pretrain.source`` transformed by the run's fitted preprocessing (a target column, if the
    file has one, is not read)."""
    from fitwell.data.sources import read_table

    frame = read_table(Path(source))
    features = preprocessor.transform(frame)
    return TensorData.from_numpy(features.numeric, features.codes, features.numeric.copy())


def pretrain_backbone(config, preprocessor, model: nn.Module, train: TensorData, val: TensorData | None,
                      folder: Path, build_network, console=None, say=print) -> dict:
    """Pretrain a copy of ``model``'s family (``build_network(out_features)``) and load its backbone
    into ``model``; write its history under ``folder``. Returns what ``pretrain.json`` records."""
    from safetensors.torch import save_file

    from fitwell.config.resolve import replace_values
    from fitwell.engine.build import build_callbacks, build_trainer
    from fitwell.engine.transfer import describe, load_matching
    from fitwell.files import write_with

    settings = config.pretrain
    if not preprocessor.num_numeric:
        raise ConfigError("pretrain: the table has no number columns to rebuild; drop the pretrain section")
    rows = [TensorData.from_numpy(train.numeric.numpy(), train.codes.numpy(), train.numeric.numpy().copy())]
    if settings.source:
        rows.append(unlabelled_rows(settings.source, preprocessor))
    data = rows[0].concat(rows[1]) if len(rows) > 1 else rows[0]
    watch = None if val is None or not len(val) else TensorData.from_numpy(
        val.numeric.numpy(), val.codes.numpy(), val.numeric.numpy().copy())
    network = build_network(preprocessor.num_numeric)
    corrupted = Corrupted(network, settings.objective, settings.mask_share, settings.noise)
    pretrain_config = replace_values(config, {"train.epochs": settings.epochs,
                                              "train.lr": settings.lr or config.train.lr,
                                              "train.max_time": None, "train.callbacks": []})
    callbacks = build_callbacks(pretrain_config, folder, console=console)
    trainer = build_trainer(pretrain_config, corrupted, nn.MSELoss(), "embedding", len(data), callbacks,
                            run_dir=folder)
    state = trainer.fit(data, watch)
    weights = {k.removeprefix("network."): v.detach().cpu().contiguous()
               for k, v in trainer.eval_module.state_dict().items()}
    write_with(folder / "weights.safetensors", lambda tmp: save_file(weights, tmp))  # for transfer.weights
    report = {**load_matching(model, weights, load_head=False), "source": "pretraining"}
    say(f"pretrain ({settings.objective}): {state.epoch} epochs on {len(data)} rows"
        f" ({len(data) - len(train)} unlabelled); {describe(report)}")
    losses = [row.get("val_loss", row.get("train_loss")) for row in state.history]
    return {"objective": settings.objective, "rows": len(data), "unlabelled_rows": len(data) - len(train),
            "epochs": state.epoch, "best_epoch": state.best_epoch,
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "backbone_loaded_share": report["backbone_loaded_share"], "loaded": len(report["loaded"]),
            "new_head": report["new_head"], "seconds_per_epoch": float(np.mean(
                [row.get("seconds", 0.0) for row in state.history])) if state.history else None}
