import numpy as np
import pytest
import torch

from fitwell.data.tensors import TensorData
from fitwell.engine.loop import Trainer
from fitwell.engine.losses import build_loss
from fitwell.models import MLP


def synthetic(n=512, features=6, seed=0, task="binary"):
    """Target depends on features 0 and 1 only; the rest are noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    signal = 2 * x[:, 0] - x[:, 1]
    y = signal.astype(np.float32) if task == "regression" else (signal > 0).astype(np.int64)
    return TensorData.from_numpy(x, np.zeros((n, 0), np.int64), y)


@pytest.fixture
def make_trainer():
    def make(task="binary", hidden=(16,), dropout=0.0, batch_norm=False, lr=0.05, epochs=5,
             batch_size=64, optimizer="sgd", seed=0, loss=None, **kwargs):
        torch.manual_seed(seed)
        out = 1
        model = MLP(6, [], out, hidden_sizes=list(hidden), dropout=dropout, batch_norm=batch_norm)
        opt = (torch.optim.SGD(model.parameters(), lr=lr) if optimizer == "sgd"
               else torch.optim.Adam(model.parameters(), lr=lr))
        return Trainer(model, loss or build_loss("auto", task), opt, task=task, epochs=epochs,
                       batch_size=batch_size, seed=seed, **kwargs)

    return make
