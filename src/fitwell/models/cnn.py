"""Convolutional networks for images: a plain CNN and a ResNet, of configurable depth and width."""

from __future__ import annotations

import torch
from torch import nn

from fitwell.models.layers import ACTIVATIONS, EncoderHead, ImageStem, needs_input
from fitwell.models.registry import register_model


def conv_bn(inputs: int, outputs: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(outputs)]


@register_model("cnn")
class CNN(EncoderHead):
    """Stages of (conv-BN-activation) x 2 then 2x2 max-pooling, global average pooling, a head.

    Args:
        num_numeric, cardinalities: the table's blocks (a CNN takes none; see ``combiner``).
        out_features: 1 for binary or regression, the number of classes otherwise.
        inputs: the input spec; ``inputs["image"]`` = {"shape": [C, H, W], "mean", "std"}.
        channels: channels of each stage; a stage halves the image while it is larger than 1 pixel.
        activation, dropout: as in the MLP (dropout before the head).

    Example:
        >>> spec = {"image": {"shape": [1, 8, 8], "mean": [0.5], "std": [0.2]}}
        >>> model = CNN(0, [], 10, spec, channels=[8])
        >>> model(None, None, image=torch.zeros(2, 1, 8, 8, dtype=torch.uint8)).shape
        torch.Size([2, 10])
    """

    input_kinds = frozenset({"image"})

    def __init__(
        self,
        num_numeric: int,
        cardinalities: list[int],
        out_features: int,
        inputs: dict | None = None,
        channels: list[int] = (32, 64),
        activation: str = "relu",
        dropout: float = 0.1,
    ):
        super().__init__()
        spec = needs_input("cnn", inputs, "image")
        width, size = spec["shape"][0], min(spec["shape"][1:])
        self.stem = ImageStem(spec["mean"], spec["std"])
        stages = []
        for out in channels:
            layers = [
                *conv_bn(width, out),
                ACTIVATIONS[activation](),
                *conv_bn(out, out),
                ACTIVATIONS[activation](),
            ]
            if size > 1:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            stages.append(nn.Sequential(*layers))
            width = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.features_out = width
        self.head = nn.Linear(width, out_features)

    def encode(self, numeric=None, codes=None, image: torch.Tensor | None = None, **_) -> torch.Tensor:
        return self.pool(self.stages(self.stem(image)))


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with a skip connection (projected when needed)."""

    def __init__(self, inputs: int, outputs: int, stride: int, activation: str):
        super().__init__()
        self.body = nn.Sequential(
            *conv_bn(inputs, outputs, stride), ACTIVATIONS[activation](), *conv_bn(outputs, outputs)
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and inputs == outputs
            else nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs)
            )
        )
        self.activation = ACTIVATIONS[activation]()
        nn.init.zeros_(self.body[-1].weight)  # each block starts as the identity (Goyal et al., 2017)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.body(x) + self.skip(x))


@register_model("resnet")
class ResNet(EncoderHead):
    """A ResNet: a 3x3 stem, stages of ``blocks`` basic blocks (each stage after the first halves
    the image while it is larger than 1 pixel), global average pooling, a head.

    Args:
        channels: channels of each stage (the stem has the first stage's width).
        blocks: basic blocks per stage.

    Example:
        >>> spec = {"image": {"shape": [3, 16, 16], "mean": [0.5] * 3, "std": [0.2] * 3}}
        >>> model = ResNet(0, [], 4, spec, channels=[8, 16], blocks=1)
        >>> model(None, None, image=torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 4])
    """

    input_kinds = frozenset({"image"})

    def __init__(
        self,
        num_numeric: int,
        cardinalities: list[int],
        out_features: int,
        inputs: dict | None = None,
        channels: list[int] = (32, 64, 128),
        blocks: int = 2,
        activation: str = "relu",
        dropout: float = 0.1,
    ):
        super().__init__()
        spec = needs_input("resnet", inputs, "image")
        size = min(spec["shape"][1:])
        self.stem = nn.Sequential(
            ImageStem(spec["mean"], spec["std"]),
            *conv_bn(spec["shape"][0], channels[0]),
            ACTIVATIONS[activation](),
        )
        stages, width = [], channels[0]
        for i, out in enumerate(channels):
            stride = 2 if i > 0 and size > 1 else 1
            size = size // stride
            stage = [BasicBlock(width, out, stride, activation)]
            stage += [BasicBlock(out, out, 1, activation) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            width = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.features_out = width
        self.head = nn.Linear(width, out_features)

    def encode(self, numeric=None, codes=None, image: torch.Tensor | None = None, **_) -> torch.Tensor:
        return self.pool(self.stages(self.stem(image)))
