"""What an unsupervised method works on: each row's coordinates -- the preprocessed number block
(scaled numbers, one-hot categories), or the code of an autoencoder trained on it by fitwell's
loop -- and, with an autoencoder, each row's reconstruction error (an anomaly score)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fitwell.errors import ConfigError
from fitwell.files import write_json, write_with


def dense(features) -> np.ndarray:
    """The number block (scaled numbers, one-hot categories) as the rows' coordinates."""
    return np.asarray(features.numeric, dtype=np.float64)


class Representation:
    """Rows -> the coordinates the method works on: the preprocessed numbers, or an autoencoder's
    embeddings of them (its reconstruction error too, for anomaly scores)."""

    def __init__(self, preprocessor, network=None):
        self.preprocessor, self.network = preprocessor, network

    def of(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """The rows' coordinates, and their reconstruction errors (None without an autoencoder)."""
        features = self.preprocessor.transform(frame)
        if self.network is None:
            return dense(features), None
        coordinates = self._run(features, lambda numeric, codes: self.network.encode(numeric, codes))
        return coordinates, self.reconstruction_error(features)

    def reconstruction_error(self, features) -> np.ndarray:
        def error(numeric, codes):
            return (self.network(numeric, codes) - numeric).pow(2).mean(dim=1, keepdim=True)

        return self._run(features, error).reshape(-1)

    def _run(self, features, apply) -> np.ndarray:
        import torch

        self.network.eval()
        numeric, codes = torch.from_numpy(features.numeric), torch.from_numpy(features.codes)
        with torch.inference_mode():
            parts = [apply(numeric[i:i + 8192], codes[i:i + 8192]) for i in range(0, len(numeric), 8192)]
        return torch.cat(parts).double().numpy() if parts else np.zeros((0, 1))


def train_autoencoder(start, rows: Any, extra_callbacks=()):
    """The ``model.name`` autoencoder, trained on the training rows by fitwell's loop (early
    stopping on the validation rows; a resumed run continues from its checkpoint), saved as
    ``model.safetensors`` + ``model.json``."""
    from safetensors.torch import save_file

    from fitwell.data.tensors import TensorData
    from fitwell.engine.build import build_callbacks, build_trainer, training_threads
    from fitwell.engine.threads import thread_limit
    from fitwell.models.autoencoder import ReconstructionLoss
    from fitwell.models.registry import MODELS, model_arguments, recorded_arguments

    config, pre, name = start.config, rows.preprocessor, start.config.model.name
    if config.train.batch_size == "auto" or config.train.lr == "auto":
        raise ConfigError("train.batch_size / train.lr: auto is measured for supervised runs; give numbers")
    data = {}
    for part in ("train", "val"):
        features = pre.transform(rows.typed.iloc[getattr(rows.split, part)])
        data[part] = TensorData.from_numpy(features.numeric, features.codes, features.numeric.copy())
    kwargs = model_arguments(name, config.model.model_dump(exclude={"name"}))
    kwargs.update(num_numeric=pre.num_numeric, cardinalities=pre.cardinalities_, out_features=pre.num_numeric)
    kwargs = recorded_arguments(name, kwargs)
    model = MODELS.build(name, key="model.name", **kwargs)
    threads, _, following = training_threads(config, model, data["train"], "cpu")
    callbacks = build_callbacks(config, start.run_dir.path, [*extra_callbacks, *following],
                                console=start.console, started_at=start.started_at)
    trainer = build_trainer(config, model, ReconstructionLoss(model), config.data.task, len(data["train"]),
                            callbacks, run_dir=start.run_dir.path)
    checkpoint = None
    if start.resumed:
        from fitwell.engine.checkpoint import load_checkpoint

        checkpoint, _ = load_checkpoint(start.run_dir.checkpoints)
    with thread_limit(threads):
        state = trainer.fit(data["train"], data["val"] if len(data["val"]) else None, checkpoint=checkpoint)
    network = trainer.eval_module
    weights = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    write_with(start.run_dir.model, lambda tmp: save_file(weights, tmp))
    write_json(start.run_dir.model_spec, {"name": name, "kwargs": kwargs})
    start.say(f"{name}: {state.epoch} epochs, validation reconstruction error"
              f" {state.history[-1].get('val_loss', float('nan')):.4g}" if state.history else name)
    losses = [row["val_loss"] for row in state.history if row.get("val_loss") is not None]
    return network, {"epochs": state.epoch, "best_epoch": state.best_epoch, "stop_reason": state.stop_reason,
                     "val_loss": min(losses) if losses else None}
