"""Model families, picked by ``model.name``."""

from fitwell.models import (  # noqa: F401  (register the families)
    autoencoder,
    cnn,
    combiner,
    mlp,
    pretrained,
    resmlp,
    sequence,
    tabm,
    tabular_transformer,
)
from fitwell.models.autoencoder import Autoencoder, ReconstructionLoss
from fitwell.models.cnn import CNN, ResNet
from fitwell.models.combiner import Combiner
from fitwell.models.mlp import MLP
from fitwell.models.pretrained import MiniLM, TimmBackbone, minilm_embeddings
from fitwell.models.registry import MODELS, input_kinds, model_arguments, register_model
from fitwell.models.resmlp import ResMLP
from fitwell.models.sequence import RNN, SequenceTransformer
from fitwell.models.tabm import TabM
from fitwell.models.tabular_transformer import TabularTransformer

__all__ = ["CNN", "MLP", "Autoencoder", "ReconstructionLoss",
           "MODELS", "RNN", "Combiner", "MiniLM", "ResMLP", "ResNet", "SequenceTransformer",
           "TabM", "TabularTransformer", "TimmBackbone", "input_kinds", "minilm_embeddings",
           "model_arguments", "register_model"]
