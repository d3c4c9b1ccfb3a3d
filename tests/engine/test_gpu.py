"""The accelerator path: skipped cleanly where no CUDA device exists (CI has none)."""

import pytest
import torch

import fitwell

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@gpu
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["32-true", "16-mixed", "bf16-mixed"])
def test_trains_on_the_gpu_with_device_resident_data(tmp_path, mixed_frame, precision):
    run = fitwell.train({"data": {"target": "label"}, "track": {"runs_dir": str(tmp_path)},
                         "train": {"accelerator": "cuda", "precision": precision, "epochs": 10,
                                   "device_data": True, "progress": False,
                                   "clip_grad_norm": 1.0}}, data=mixed_frame)
    losses = [r["train_loss"] for r in run.history]
    assert losses[-1] < losses[0] and run.metrics["accuracy"] > 0.8


@gpu
@pytest.mark.gpu
def test_gpu_resume_is_exact(tmp_path, mixed_frame):
    from fitwell.engine.callbacks import Callback

    class Stop(Callback):
        def on_epoch_end(self, trainer, state):
            if state.epoch == 2:
                raise KeyboardInterrupt

    config = {"data": {"target": "label"}, "train": {"accelerator": "cuda", "epochs": 4, "progress": False,
                                                     "deterministic": True}}
    try:
        whole = fitwell.train(config, {"track.runs_dir": str(tmp_path / "a")}, data=mixed_frame)
        with pytest.raises(KeyboardInterrupt):
            fitwell.train(config, {"track.runs_dir": str(tmp_path / "b"), "track.name": "r"},
                          data=mixed_frame, callbacks=[Stop()])
        resumed = fitwell.train(resume=tmp_path / "b" / "r", data=mixed_frame)
    finally:
        torch.use_deterministic_algorithms(False)
    assert resumed.metrics == whole.metrics


def test_asking_for_cuda_without_one_names_the_key(tmp_path, mixed_frame):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(fitwell.ConfigError, match=r"train\.accelerator"):
        fitwell.train({"data": {"target": "label"}, "track": {"runs_dir": str(tmp_path)},
                       "train": {"accelerator": "cuda"}}, data=mixed_frame)
