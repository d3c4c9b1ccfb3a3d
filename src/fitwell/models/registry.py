"""The model registry. Every model takes ``(numeric, codes)`` batches and returns logits."""

from fitwell.registry import Registry

MODELS = Registry("model")
register_model = MODELS.register
