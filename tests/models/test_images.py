"""Images: digits as 8x8 images, a CNN at >= 0.97, image folders and path columns, augmentation
that only ever touches training batches, test-time augmentation, synthetic copies, the combiner."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from fitwell.data.augment import BatchAugment, cutmix
from fitwell.data.sources import read_table
from fitwell.errors import ConfigError, DataError
from fitwell.pipeline import train

DIGITS_IMAGES = {"source": "sklearn:digits", "image": {"pixels": "pixel_*", "size": [8, 8], "max_value": 16}}


def digits_config(tmp_path, **sections):
    config = {
        "data": dict(DIGITS_IMAGES),
        "model": {"name": "cnn", "channels": [32, 64]},
        "train": {"epochs": 20, "lr": 3e-3, "batch_size": 64, "progress": False},
        "track": {"runs_dir": str(tmp_path), "report": False},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    return config


def test_cnn_on_digits_images_reaches_097(tmp_path):
    run = train(digits_config(tmp_path, augment={"rotation": 8, "translate": 0.1}))
    assert run.metrics["accuracy"] >= 0.97
    spec = json.loads((run.path / "model.json").read_text())
    assert spec["kwargs"]["inputs"]["image"]["shape"] == [1, 8, 8]
    frame = read_table("sklearn:digits")
    rows = frame.iloc[run.summary["split"]["train"] :].head(40)  # raw pixel rows through the bundle
    predicted = run.predict(rows)
    assert (predicted["prediction"].to_numpy() == rows["target"].to_numpy()).mean() >= 0.9


def test_digits_pixels_become_uint8_images(tmp_path):
    from fitwell.config.load import load_config
    from fitwell.data.prepare import prepare

    prepared = prepare(load_config(digits_config(tmp_path)))
    image = prepared.train.inputs["image"]
    assert image.dtype == torch.uint8 and image.shape[1:] == (1, 8, 8)
    assert prepared.train.numeric.shape[1] == 0  # every pixel column went to the image
    frame = prepared.frame.iloc[prepared.split.train[:1]]
    expected = np.rint(
        frame[[f"pixel_{r}_{c}" for r in range(8) for c in range(8)]].to_numpy(float) / 16 * 255
    )
    assert np.array_equal(image[0, 0].numpy().reshape(-1), expected.reshape(-1).astype(np.uint8))
    assert "image input" in prepared.plan.dropped["pixel_3_4"]


def test_augmentation_only_touches_training_batches(tmp_path, monkeypatch):
    calls = []
    original = BatchAugment.__call__

    def counting(self, numeric, codes, inputs, target):
        calls.append(len(target))
        return original(self, numeric, codes, inputs, target)

    monkeypatch.setattr(BatchAugment, "__call__", counting)
    config = digits_config(
        tmp_path,
        train={"epochs": 2, "batch_size": 128},
        augment={"rotation": 20, "erasing": 0.5, "mixup": 0.4, "color_jitter": 0.3},
    )
    run = train(config)
    rows = run.summary["split"]["train"]
    assert sum(calls) == 2 * rows  # every training row of both epochs, nothing else
    # validation / predict are never augmented: identical outputs twice in a row
    frame = read_table("sklearn:digits").head(64)
    first, second = run.predict_proba(frame), run.predict_proba(frame)
    assert np.array_equal(first, second)


def test_augmented_batches_differ_and_mix():
    torch.manual_seed(0)
    spec = {"image": {"shape": [1, 8, 8], "mean": [0.3], "std": [0.3]}}
    from fitwell.config.schema import AugmentConfig

    augment = BatchAugment(AugmentConfig(rotation=30, mixup=0.4), spec, "multiclass")
    image = torch.randint(0, 255, (16, 1, 8, 8), dtype=torch.uint8)
    numeric, codes, inputs, mix = augment(
        torch.zeros(16, 0), torch.zeros(16, 0), {"image": image}, torch.arange(16) % 3
    )
    assert inputs["image"].dtype == torch.float32 and not torch.allclose(inputs["image"], image.float() / 255)
    permutation, lam = mix
    assert sorted(permutation.tolist()) == list(range(16)) and 0 <= lam <= 1
    mixed, share = cutmix(torch.zeros(4, 1, 10, 10), torch.tensor([1, 0, 3, 2]), 0.75)
    assert 0 < share < 1


def test_image_options_without_images_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="no image input"):
        train(
            {
                "data": {"source": "sklearn:wine"},
                "augment": {"rotation": 10},
                "train": {"epochs": 1, "progress": False},
                "track": {"runs_dir": str(tmp_path)},
            }
        )
    with pytest.raises(
        ConfigError, match="model.name .cnn. needs an image, text or sequence input: set data.image"
    ):
        train(
            {
                "data": {"source": "sklearn:wine"},
                "model": {"name": "cnn"},
                "train": {"epochs": 1, "progress": False},
                "track": {"runs_dir": str(tmp_path)},
            }
        )


def write_images(folder, count=24, size=12):
    """Two classes: bright top half ('top') or bright bottom half ('bottom'), with noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("top", "bottom"):
        (folder / label).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 80, (size, size, 3)).astype(np.uint8)
            half = slice(0, size // 2) if label == "top" else slice(size // 2, size)
            pixels[half] = np.clip(pixels[half].astype(int) + 170, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / label / f"{i}.png")


def test_image_folder_and_path_column(tmp_path):
    images = tmp_path / "images"
    write_images(images)
    run = train(
        {
            "data": {"source": str(images), "image": {"channels": 3, "size": [12, 12]}},  # column: image
            "model": {"name": "resnet", "channels": [8, 16], "blocks": 1},
            "split": {"train": 0.6, "val": 0.2, "test": 0.2},
            "train": {"epochs": 15, "lr": 3e-3, "batch_size": 16, "progress": False},
            "track": {"runs_dir": str(tmp_path / "runs"), "report": False},
        }
    )
    assert run.metrics["accuracy"] >= 0.9
    # a CSV of relative paths, predicted through the saved bundle
    table = pd.DataFrame({"image": ["top/0.png", "bottom/3.png"], "label": ["top", "bottom"]})
    table.to_csv(images / "few.csv", index=False)
    absolute = table.assign(image=[str(images / p) for p in table["image"]])
    assert list(run.predict(absolute)["prediction"]) == ["top", "bottom"]
    assert list(run.predict(images / "few.csv")["prediction"]) == ["top", "bottom"]  # relative to the CSV
    with pytest.raises(DataError, match=r"row 0: image file .*missing.png does not exist"):
        run.predict(pd.DataFrame({"image": [str(images / "missing.png")]}))


def test_test_time_augmentation(tmp_path):
    run = train(digits_config(tmp_path, train={"epochs": 3}, augment={"flip": 0.0, "rotation": 10, "tta": 0}))
    frame = read_table("sklearn:digits").head(30)
    plain = run.predict_proba(frame)
    tta = run.predict_proba(frame, tta=6)
    assert np.allclose(tta.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(plain, tta) and np.abs(plain - tta).max() < 0.5
    assert np.array_equal(run.predict_proba(frame, tta=1), plain)


def test_synthetic_image_copies_are_training_only(tmp_path):
    run = train(
        digits_config(
            tmp_path,
            train={"epochs": 1},
            data={"synthetic": {"method": "augment", "ratio": 0.5}},
            augment={"rotation": 10},
        )
    )
    report = json.loads((run.path / "data.json").read_text())["synthetic"]
    split = report["rows_before"]
    assert report["rows_added"] == round(0.5 * split) and report["split"] == "train"
    sizes = run.summary["split"]
    assert sizes["train"] == split and sizes["val"] + sizes["test"] + split == 1797  # val/test untouched


def test_combiner_fuses_table_and_image(tmp_path):
    frame = read_table("sklearn:digits")
    rng = np.random.default_rng(0)
    frame["hint"] = (frame["target"] >= 5).astype(float) + rng.normal(0, 0.1, len(frame))
    run = train(
        {
            "data": {"image": DIGITS_IMAGES["image"]},
            "model": {"name": "combiner", "channels": [16, 32], "hidden_sizes": [32]},
            "train": {"epochs": 8, "lr": 3e-3, "batch_size": 64, "progress": False},
            "track": {"runs_dir": str(tmp_path), "report": False},
        },
        data=frame,
    )
    assert run.metrics["accuracy"] >= 0.9
    assert run.predict(frame.head(5))["prediction"].notna().all()


def test_ensembles_refuse_image_inputs(tmp_path):
    from fitwell.ensemble.build import fit_ensemble

    with pytest.raises(ConfigError, match="data.image: ensembles combine table models"):
        fit_ensemble({"data": dict(DIGITS_IMAGES), "ensemble": {"members": [{"name": "a"}]},
                      "track": {"runs_dir": str(tmp_path)}})


def test_tune_searches_image_families_depth_and_width(tmp_path):
    from fitwell.tune import tune

    config = digits_config(tmp_path, train={"epochs": 2})
    config["tune"] = {"sampler": "grid", "trials": 4, "space": {
        "model.name": {"type": "categorical", "choices": ["cnn", "resnet"]},
        "model.channels": {"type": "categorical", "choices": [[8], [8, 16]]},
    }}
    config["model"] = {"name": "cnn", "blocks": 1}
    summary = tune(config)
    built = set()
    for trial in (tmp_path / "study").glob("trial-*"):
        spec = json.loads((trial / "model.json").read_text())
        built.add((spec["name"], tuple(spec["kwargs"]["channels"])))
    assert built == {("cnn", (8,)), ("cnn", (8, 16)), ("resnet", (8,)), ("resnet", (8, 16))}
    assert summary["test"]["accuracy"] >= 0.8


def test_combiner_fuses_table_text_and_image(tmp_path):
    """Eight classes, one bit from each input kind: a model reading any one of them is right a
    quarter of the time at best."""
    frame = read_table("sklearn:digits")
    rng = np.random.default_rng(0)
    high = frame["target"].to_numpy() >= 5
    positive = rng.random(len(frame)) < 0.5
    words = rng.choice(["the", "film", "was", "quite", "really", "plot"], (len(frame), 4))
    sentiment = np.where(positive, "great", "awful")
    frame["review"] = [" ".join([*w[:2], s, *w[2:]]) for w, s in zip(words, sentiment, strict=True)]
    frame["x"] = rng.normal(0, 1, len(frame))
    frame["label"] = 4 * (frame["x"] > 0) + 2 * positive + high
    frame = frame.drop(columns="target")
    run = train(
        {
            "data": {"target": "label", "image": DIGITS_IMAGES["image"],
                     "text": {"column": "review", "vocab_size": 60, "max_length": 12}},
            "model": {"name": "combiner", "channels": [16, 32], "hidden_sizes": [32], "width": 32},
            "train": {"epochs": 15, "lr": 3e-3, "batch_size": 64, "progress": False},
            "track": {"runs_dir": str(tmp_path), "report": False},
        },
        data=frame,
    )
    spec = json.loads((run.path / "model.json").read_text())["kwargs"]["inputs"]
    assert set(spec) == {"image", "tokens"}
    assert run.metrics["accuracy"] >= 0.85  # chance 1/8; any single input kind 1/4
