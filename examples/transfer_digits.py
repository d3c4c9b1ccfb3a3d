"""Transfer learning on scikit-learn's digits: pretrain a CNN on the digits 0-4, then fine-tune it
on the digits 5-9 with only 10% of their training rows, against the same CNN trained from scratch
on those rows. Run: python examples/transfer_digits.py  (about half a minute on 2 CPU cores)

The fine-tuned run starts from the pretrained run's weights (matched by name and shape; the head
is new), keeps the backbone frozen for the first epochs and unfreezes it one stage at a time
(gradual unfreezing), with the backbone at a third of the head's learning rate.
"""

from fitwell import train
from fitwell.data.sources import read_table

digits = read_table("sklearn:digits")
first, second = digits[digits.target < 5], digits[digits.target >= 5]
base = {
    "data": {"image": {"pixels": "pixel_*", "size": [8, 8], "max_value": 16}},
    "model": {"name": "cnn", "channels": [32, 64]},
    "train": {"epochs": 30, "lr": 3e-3, "batch_size": 32, "early_stopping": {"patience": 8}, "progress": False},
    "track": {"runs_dir": "runs", "report": False},
}
few = {"split": {"train": 0.07, "val": 0.13, "test": 0.80}}  # 10% of a 70% training split

pretrained = train(base, data=first)
print(f"pretrained on 0-4: test accuracy {pretrained.metrics['accuracy']:.4f} ({pretrained.path})")
scratch = train({**base, **few}, data=second)
tuned = train({**base, **few, "transfer": {"weights": str(pretrained.path), "freeze": "backbone",
                                           "unfreeze_every": 2, "backbone_lr": 0.3}}, data=second)
rows = tuned.summary["split"]["train"]
print(f"5-9 with {rows} training rows: from scratch {scratch.metrics['accuracy']:.4f},"
      f" fine-tuned {tuned.metrics['accuracy']:.4f}")
