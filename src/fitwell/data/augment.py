"""Augmentation on the batch: kornia for images, mixup / cutmix, noise for tables, token dropout.

The Trainer calls a BatchAugment on training batches only; validation, test and ``predict`` never
see it (``predict(..., tta=n)`` asks for test-time augmentation explicitly). Everything runs on
the batch's device with torch's random state, which checkpoints save and restore.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fitwell.config.schema import AugmentConfig
from fitwell.errors import ConfigError


def image_pipeline(config: AugmentConfig, size: tuple[int, int], test_time: bool = False) -> nn.Module | None:
    """The configured kornia augmentations, in the usual order (geometry, colour, erasing).
    ``test_time`` keeps only the label-preserving geometric ones (flips, affine, crop)."""
    import kornia.augmentation as K

    steps: list[nn.Module] = []
    if config.flip:
        steps.append(K.RandomHorizontalFlip(p=config.flip))
    if config.vertical_flip:
        steps.append(K.RandomVerticalFlip(p=config.vertical_flip))
    if config.rotation or config.translate or config.scale or config.shear:
        steps.append(
            K.RandomAffine(
                degrees=config.rotation,
                translate=(config.translate, config.translate) if config.translate else None,
                scale=(1 - config.scale, 1 + config.scale) if config.scale else None,
                shear=config.shear or None,
                p=1.0,
            )
        )
    if config.crop:
        steps.append(K.RandomResizedCrop(size=tuple(size), scale=tuple(config.crop_scale), p=config.crop))
    if not test_time:
        if config.color_jitter:
            steps.append(K.ColorJiggle(brightness=config.color_jitter, contrast=config.color_jitter, p=1.0))
        if config.erasing:
            steps.append(K.RandomErasing(p=config.erasing))
    return nn.Sequential(*steps) if steps else None


class BatchAugment:
    """Augments one training batch; returns the batch and, when mixed, ``(permutation, lam)``.

    Args:
        config: the ``augment`` section.
        inputs: the input spec (``Preprocessor.input_spec()``): which blocks exist.
        task: binary, multiclass or regression.

    Example:
        >>> augment = BatchAugment(AugmentConfig(noise=0.1), {}, "regression")
        >>> numeric, codes, inputs, mix = augment(torch.zeros(4, 2), torch.zeros(4, 0), {}, torch.zeros(4))
        >>> bool(numeric.abs().sum() > 0), mix
        (True, None)
    """

    def __init__(self, config: AugmentConfig, inputs: dict, task: str):
        self.config = config
        self.task = task
        image = inputs.get("image")
        if config.image_enabled and image is None:
            raise ConfigError(
                "augment: flip/rotation/affine/crop/colour/erasing augment images, and the data"
                " has no image input (data.image)"
            )
        if config.cutmix and image is None:
            raise ConfigError(
                "augment.cutmix pastes image patches; the data has no image input. Use augment.mixup"
            )
        if config.mixup and "tokens" in inputs:
            raise ConfigError(
                "augment.mixup: token ids cannot be interpolated; for text use augment.token_dropout"
            )
        if config.token_dropout and "tokens" not in inputs:
            raise ConfigError("augment.token_dropout needs a text input (data.text)")
        self.images = (
            image_pipeline(config, tuple(image["shape"][1:])) if image and config.image_enabled else None
        )
        self.mask_id = inputs["tokens"]["mask_id"] if "tokens" in inputs else None

    def __call__(
        self,
        numeric: torch.Tensor,
        codes: torch.Tensor,
        inputs: dict[str, torch.Tensor],
        target: torch.Tensor,
    ):
        config = self.config
        inputs = dict(inputs)
        if "image" in inputs and (self.images is not None or config.mixup or config.cutmix):
            image = inputs["image"]
            image = image.float() / 255.0 if image.dtype == torch.uint8 else image
            if self.images is not None:
                with torch.no_grad():
                    image = self.images(image)
            inputs["image"] = image
        if config.noise and numeric.shape[1]:
            numeric = numeric + config.noise * torch.randn_like(numeric)
        if config.token_dropout:
            tokens = inputs["tokens"]
            drop = (torch.rand(tokens.shape, device=tokens.device) < config.token_dropout) & (tokens > 0)
            inputs["tokens"] = tokens.masked_fill(drop, self.mask_id)
        mix = None
        if (config.mixup or config.cutmix) and len(target) > 1 and float(torch.rand(())) < config.mix_prob:
            use_cutmix = bool(config.cutmix) and (not config.mixup or float(torch.rand(())) < 0.5)
            alpha = config.cutmix if use_cutmix else config.mixup
            lam = float(torch.distributions.Beta(alpha, alpha).sample())
            permutation = torch.randperm(len(target), device=target.device)
            if use_cutmix:
                inputs["image"], lam = cutmix(inputs["image"], permutation, lam)
            else:
                numeric = lam * numeric + (1 - lam) * numeric[permutation]
                for key in ("image", "sequence"):
                    if key in inputs:
                        inputs[key] = lam * inputs[key] + (1 - lam) * inputs[key][permutation]
                if "sequence_mask" in inputs:
                    inputs["sequence_mask"] = inputs["sequence_mask"] | inputs["sequence_mask"][permutation]
            mix = (permutation, lam)
        return numeric, codes, inputs, mix


def cutmix(image: torch.Tensor, permutation: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
    """Paste a box of each partner image (area 1 - lam); return the images and the true area share."""
    height, width = image.shape[-2:]
    cut = math.sqrt(1.0 - lam)
    box_h, box_w = int(height * cut), int(width * cut)
    top = int(torch.randint(0, height - box_h + 1, ()))
    left = int(torch.randint(0, width - box_w + 1, ()))
    mixed = image.clone()
    mixed[..., top : top + box_h, left : left + box_w] = image[permutation][
        ..., top : top + box_h, left : left + box_w
    ]
    return mixed, 1.0 - (box_h * box_w) / (height * width)


@torch.inference_mode()
def predict_with_tta(
    module: nn.Module,
    numeric: torch.Tensor,
    codes: torch.Tensor,
    inputs: dict,
    config: AugmentConfig,
    copies: int,
    probabilities,
) -> torch.Tensor:
    """Test-time augmentation: the mean of ``probabilities(outputs)`` over the plain batch and
    ``copies - 1`` augmented copies (flips / affine / crop for images, noise for tables).

    Args:
        probabilities: maps raw outputs to what is averaged (class probabilities, or identity
            for regression).
    """
    image = inputs.get("image")
    images = image_pipeline(config, tuple(image.shape[-2:]), test_time=True) if image is not None else None
    if images is None and not config.noise:
        raise ConfigError(
            "augment.tta: no test-time augmentation is configured (image flips, rotation,"
            " affine or crop, or augment.noise for tables)"
        )
    module.eval()
    total = probabilities(module(numeric, codes, **inputs))
    for _ in range(copies - 1):
        copy = dict(inputs)
        if images is not None:
            copy["image"] = images(image.float() / 255.0)
        noisy = numeric + config.noise * torch.randn_like(numeric) if config.noise else numeric
        total = total + probabilities(module(noisy, codes, **copy))
    return total / copies
