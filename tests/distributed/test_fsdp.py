"""Model parallel (``train.strategy: fsdp``): FSDP2 on 2 real CPU processes (gloo) trains the
weights one process trains, and its checkpoint resumes on 1 process and on 2."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

import fitwell
from fitwell.config import load_config
from fitwell.engine.checkpoint import load_checkpoint
from fitwell.engine.sharding import units
from fitwell.errors import ConfigError
from tests.distributed.test_ddp import PLAIN, kill_after_two_checkpoints, weights_gap

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed")


def history(path) -> list[dict]:
    return [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sharded_processes_killed_then_resumed_on_two_or_one_train_the_weights_of_one(write_config, tmp_path,
                                                                                        table):
    """2 FSDP processes SIGKILLed after their second checkpoint resume on 2 (sharded) and on 1:
    both end with the weights and curves of an unbroken single process (the checkpoint is the
    file one process writes; the gradient norms summed from shards are the whole gradient's)."""
    train = {"epochs": 6, "batch_size": 32, "lr": 0.002, "checkpoint_max_overhead": 0, "clip_grad_norm": 1.0,
             "early_stopping": {"enabled": False}}
    config = write_config({"data": {"source": str(table), "target": "y"}, "model": PLAIN, "seed": 1,
                           "train": train, "track": {"report": False}})
    unbroken = fitwell.train(config, {"track.name": "unbroken"})
    runs = tmp_path / "runs"
    saved = kill_after_two_checkpoints(["train", str(config), "train.devices=2", "train.strategy=fsdp",
                                        "track.name=killed", "-q"], tmp_path, runs / "killed")
    assert saved["trainer"]["epoch"] < train["epochs"], "the run finished before it was killed"
    single = load_checkpoint(unbroken.path / "checkpoints")[0]  # the same layout as one process's
    assert {i: s["exp_avg"].shape for i, s in saved["optimizer"]["state"].items()} == {
        i: s["exp_avg"].shape for i, s in single["optimizer"]["state"].items()}
    shutil.copytree(runs / "killed", runs / "killed-on-one")
    for name, more in (("killed", []), ("killed-on-one", ["train.devices=1"])):
        fitwell.train(resume=runs / name, overrides=more)  # in this process; its launcher for 2
        assert weights_gap(unbroken.path, runs / name) < 1e-5
        for ours, theirs in zip(history(runs / name), history(unbroken.path), strict=True):
            for key in ("train_loss", "val_loss", "grad_norm"):
                assert ours.get(key) == pytest.approx(theirs.get(key), rel=1e-4), (name, key)
    assert fitwell.load_run(runs / "killed").config.train.strategy == "fsdp"


def test_what_fsdp_shards_on_its_own():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 8)
            self.attention = nn.MultiheadAttention(8, 2)  # reads out_proj.weight itself
            self.head = nn.Linear(8, 1)
            self.norm = nn.LayerNorm(8)

    block = Block()
    assert units(block) == [block.embed, block.head]


def test_what_fsdp_cannot_keep_is_refused():
    base = {"data": {"source": "x.csv"}, "train": {"strategy": "fsdp", "devices": 2}}
    assert load_config(base).train.strategy == "fsdp"
    for key, value, words in (("train.averaging", {"kind": "ema"}, "averaging"),
                              ("train.l2", 0.01, "weight_decay"),
                              ("train.checkpoint_every_steps", 5, "epoch ends"),
                              ("train.precision", "16-mixed", "bf16-mixed")):
        section, name = key.split(".")
        config = {**base, "train": {**base["train"], name: value}}
        with pytest.raises(ConfigError, match=f"fsdp cannot keep.*{words}"):
            load_config(config)
    with pytest.raises(ConfigError, match="transfer.freeze"):
        load_config({**base, "transfer": {"weights": "w.safetensors", "freeze": "backbone"}})


def train_bare(processes: int) -> dict:
    """A Trainer with no callbacks on seeded data, sharded over ``processes`` (1: plain); the
    final weights. Nobody reads them between epochs, so a sharded run gathers them once, at the end."""
    from fitwell.data.tensors import TensorData
    from fitwell.engine.loop import Trainer
    from fitwell.engine.losses import build_loss
    from fitwell.models import MLP

    fabric = None
    if processes > 1:
        from lightning_fabric import Fabric

        fabric = Fabric(accelerator="cpu", devices=processes, strategy="ddp")
        fabric.launch()
    generator = torch.Generator().manual_seed(0)
    numeric = torch.randn(600, 5, generator=generator)
    target = (numeric[:, 0] - numeric[:, 1] > 0).float()
    torch.manual_seed(0)
    model = MLP(5, [], 1, hidden_sizes=[16], dropout=0.0, batch_norm=False)
    trainer = Trainer(model, build_loss("auto", "binary"), torch.optim.Adam(model.parameters(), lr=0.01),
                      task="binary", epochs=3, batch_size=64, fabric=fabric, shard=processes > 1)
    trainer.fit(TensorData(numeric, torch.zeros(600, 0, dtype=torch.long), target))
    return {name: value.detach().clone() for name, value in trainer.module.state_dict().items()}


def test_a_sharded_loop_without_callbacks_ends_with_the_weights_of_one_process():
    from fitwell.engine.distributed import launch

    sharded, single = launch(train_bare, (2,), 2, threads=1), train_bare(1)
    assert sharded.keys() == single.keys()
    assert max(float((sharded[k] - single[k]).abs().max()) for k in single) < 1e-6
