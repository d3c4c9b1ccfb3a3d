"""Model families, picked by ``model.name``."""

from fitwell.models import mlp, resmlp, tabular_transformer  # noqa: F401  (register the families)
from fitwell.models.mlp import MLP
from fitwell.models.registry import MODELS, model_arguments, register_model
from fitwell.models.resmlp import ResMLP
from fitwell.models.tabular_transformer import TabularTransformer

__all__ = ["MLP", "MODELS", "ResMLP", "TabularTransformer", "model_arguments", "register_model"]
