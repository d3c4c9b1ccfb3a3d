"""Model families, picked by ``model.name``."""

from fitwell.models import mlp  # noqa: F401  (registers "mlp")
from fitwell.models.mlp import MLP
from fitwell.models.registry import MODELS, register_model

__all__ = ["MLP", "MODELS", "register_model"]
