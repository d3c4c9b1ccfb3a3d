"""``data.synthetic``: enlarge the training split with generated rows -- never validation or test.

- ``interpolate`` (tables): SMOTE-style rows on the segment between a training row and one of its
  k nearest neighbours of the same class (imbalanced-learn's SMOTE / SMOTE-NC with every class
  grown by ``ratio``); for regression the target is interpolated with the same weight.
- ``augment`` (images): augmented copies of randomly drawn training images, made once with the
  ``augment`` section's image settings (kornia) and stored as uint8 like the originals.
"""

from __future__ import annotations

import numpy as np
import torch

from fitwell.config.inputs import SyntheticConfig
from fitwell.config.schema import AugmentConfig
from fitwell.data.tensors import TensorData
from fitwell.errors import ConfigError


def synthesize(
    data: TensorData, config: SyntheticConfig, task: str, augment: AugmentConfig, seed: int
) -> tuple[TensorData, dict]:
    """The training tensors with ``round(ratio * rows)`` generated rows appended, and a report.

    Raises:
        ConfigError: the method does not fit the data (naming ``data.synthetic.method``).
    """
    n = len(data)
    if config.method == "augment":
        out = _augmented_copies(data, config, augment, seed)
    else:
        if data.inputs:
            raise ConfigError(
                f"data.synthetic.method: interpolate makes table rows; this data has"
                f" {', '.join(data.inputs)} input. Use method: augment for images"
            )
        if data.weight is not None:
            raise ConfigError(
                "data.synthetic: interpolated rows have no row weight (data.weight_column);"
                " remove one of the two"
            )
        out = _interpolated(data, config, task, seed)
    report = {
        "method": config.method,
        "ratio": config.ratio,
        "split": "train",
        "rows_before": n,
        "rows_added": len(out) - n,
        "rows_after": len(out),
    }
    return out, report


def _augmented_copies(
    data: TensorData, config: SyntheticConfig, augment: AugmentConfig, seed: int
) -> TensorData:
    from fitwell.data.augment import image_pipeline

    if "image" not in data.inputs:
        raise ConfigError(
            "data.synthetic.method: augment copies images; the data has no image input."
            " Use method: interpolate for tables"
        )
    images = data.inputs["image"]
    pipeline = image_pipeline(augment, tuple(images.shape[-2:]))
    if pipeline is None:
        raise ConfigError(
            "data.synthetic.method augment uses the augment section's image settings, and"
            " none is set; set e.g. augment.rotation: 10 and augment.translate: 0.1"
        )
    count = int(round(config.ratio * len(data)))
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, len(data), (count,), generator=generator)
    fork = torch.random.fork_rng()
    with fork, torch.no_grad():
        torch.manual_seed(seed)
        copies = []
        for part in rows.split(512):
            made = pipeline(images[part].float() / 255.0)
            copies.append((made * 255.0).round().clamp(0, 255).to(torch.uint8))
    extra = data.select(rows)
    extra.inputs["image"] = torch.cat(copies) if copies else images[:0]
    return TensorData.concat(data, extra)


def _interpolated(data: TensorData, config: SyntheticConfig, task: str, seed: int) -> TensorData:
    numeric, codes = data.numeric.numpy().astype(np.float64), data.codes.numpy()
    y = data.target.numpy()
    X = np.hstack([numeric, codes.astype(np.float64)])
    if task == "regression":
        from sklearn.neighbors import NearestNeighbors

        rng = np.random.default_rng(seed)
        count = int(round(config.ratio * len(X)))
        k = min(config.k_neighbors, len(X) - 1)
        if k < 1:
            raise ConfigError("data.synthetic: interpolation needs at least 2 training rows")
        neighbours = (
            NearestNeighbors(n_neighbors=k + 1).fit(numeric).kneighbors(numeric, return_distance=False)
        )
        base = rng.integers(0, len(X), count)
        partner = neighbours[base, rng.integers(1, k + 1, count)]
        lam = rng.random(count)
        new_numeric = numeric[base] + lam[:, None] * (numeric[partner] - numeric[base])
        new_codes = np.where(lam[:, None] < 0.5, codes[base], codes[partner])
        new_y = (y[base] + lam * (y[partner] - y[base])).astype(y.dtype)
        X_new = np.vstack([X, np.hstack([new_numeric, new_codes.astype(np.float64)])])
        y_new = np.concatenate([y, new_y])
    else:
        from imblearn import over_sampling

        counts = np.bincount(y.astype(np.int64))
        smallest = counts[counts > 0].min()
        if smallest < 2:
            raise ConfigError("data.synthetic: a class has a single training row; interpolation needs two")
        k = min(config.k_neighbors, smallest - 1)
        strategy = {c: int(round(n * (1 + config.ratio))) for c, n in enumerate(counts) if n > 0}
        categorical = list(range(numeric.shape[1], X.shape[1]))
        if categorical:
            sampler = over_sampling.SMOTENC(
                categorical_features=categorical, sampling_strategy=strategy, k_neighbors=k, random_state=seed
            )
        else:
            sampler = over_sampling.SMOTE(sampling_strategy=strategy, k_neighbors=k, random_state=seed)
        X_new, y_new = sampler.fit_resample(X, y)
    width = numeric.shape[1]
    return TensorData.from_numpy(
        np.ascontiguousarray(X_new[:, :width], dtype=np.float32),
        np.ascontiguousarray(np.rint(X_new[:, width:]), dtype=np.int64),
        np.ascontiguousarray(y_new, dtype=y.dtype),
    )
