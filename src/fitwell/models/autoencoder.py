"""Autoencoders for tables: dense, denoising and variational, trained by the same loop as every
network (the target is the number block itself) and used by the unsupervised tasks for
embeddings (``encode``) and anomaly scores (the reconstruction error).

The encoder is an MLP over the numbers and the embedded category codes down to
``hidden_sizes[-1]`` (the code); the decoder mirrors it back to ``out_features`` numbers. The
variational one encodes a mean and a log-variance, samples the code while training (the
reparameterisation trick) and keeps its KL divergence in ``kl_`` for ``ReconstructionLoss``.
"""

from __future__ import annotations

import torch
from torch import nn

from fitwell.models.layers import ACTIVATIONS, CategoryEmbeddings, init_linear
from fitwell.models.registry import register_model


def dense_stack(width: int, sizes: list[int], activation: str, dropout: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    for size in sizes:
        linear = nn.Linear(width, size)
        init_linear(linear, activation)
        layers += [linear, ACTIVATIONS[activation]()] + ([nn.Dropout(dropout)] if dropout > 0 else [])
        width = size
    return nn.Sequential(*layers), width


class Autoencoder(nn.Module):
    """An MLP autoencoder of the number block.

    Args:
        num_numeric: width of the float input block.
        cardinalities: size of each coded column's vocabulary (codes are embedded as inputs).
        out_features: width of the reconstruction (the number block's, when fitwell builds it).
        hidden_sizes: the encoder's widths; the last is the code (the embedding) size.
        activation, dropout, embedding_dim: as in ``mlp``.
        noise: standard deviation of the Gaussian noise added to the numbers while training
            (a denoising autoencoder; 0: none).
        variational: encode a Gaussian and sample from it while training (a VAE).

    Example:
        >>> model = Autoencoder(num_numeric=4, cardinalities=[], out_features=4, hidden_sizes=[8, 2])
        >>> model(torch.zeros(3, 4), torch.zeros(3, 0, dtype=torch.long)).shape, model.encode(
        ...     torch.zeros(3, 4), torch.zeros(3, 0, dtype=torch.long)).shape
        (torch.Size([3, 4]), torch.Size([3, 2]))
    """

    unsupervised = True  # trained on its own inputs; the supervised quality suite leaves it out

    def __init__(self, num_numeric: int, cardinalities: list[int], out_features: int,
                 hidden_sizes: list[int] = (64, 16), activation: str = "relu", dropout: float = 0.0,
                 embedding_dim: int = 16, noise: float = 0.0, variational: bool = False):
        super().__init__()
        self.noise, self.variational = noise, variational
        self.embeddings = CategoryEmbeddings(list(cardinalities), embedding_dim) if cardinalities else None
        width = num_numeric + (self.embeddings.out_features if self.embeddings else 0)
        sizes = list(hidden_sizes)
        self.encoder, width = dense_stack(width, sizes[:-1], activation, dropout)
        self.code = nn.Linear(width, sizes[-1] * (2 if variational else 1))
        if variational:  # start with a narrow posterior (std e^-2): the code is not noise at first
            nn.init.constant_(self.code.bias[sizes[-1]:], -4.0)
        self.decoder, width = dense_stack(sizes[-1], sizes[-2::-1], activation, dropout)
        self.head = nn.Linear(width, out_features)
        self.kl_: torch.Tensor | None = None

    def _code(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        if self.training and self.noise > 0:
            numeric = numeric + self.noise * torch.randn_like(numeric)
        if self.embeddings is not None:
            numeric = torch.cat([numeric, self.embeddings(codes)], dim=1)
        return self.code(self.encoder(numeric))

    def encode(self, numeric: torch.Tensor, codes: torch.Tensor, **_) -> torch.Tensor:
        """The embedding of each row (a VAE's mean)."""
        code = self._code(numeric, codes)
        return code.chunk(2, dim=1)[0] if self.variational else code

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        code = self._code(numeric, codes)
        if self.variational:
            mean, log_var = code.chunk(2, dim=1)
            log_var = log_var.clamp(-10, 10)
            self.kl_ = 0.5 * (mean.pow(2) + log_var.exp() - 1 - log_var).sum(dim=1)
            code = mean + torch.randn_like(mean) * (0.5 * log_var).exp() if self.training else mean
        return self.head(self.decoder(code))


@register_model("autoencoder")
def autoencoder(num_numeric: int, cardinalities: list[int], out_features: int,
                hidden_sizes: list[int] = (64, 16), activation: str = "relu", dropout: float = 0.0,
                embedding_dim: int = 16) -> Autoencoder:
    """A dense autoencoder (see ``Autoencoder``)."""
    return Autoencoder(num_numeric, cardinalities, out_features, hidden_sizes, activation, dropout,
                       embedding_dim)


@register_model("denoising_autoencoder")
def denoising_autoencoder(num_numeric: int, cardinalities: list[int], out_features: int,
                          hidden_sizes: list[int] = (64, 16), activation: str = "relu", dropout: float = 0.0,
                          embedding_dim: int = 16, noise: float = 0.2) -> Autoencoder:
    """An autoencoder trained to rebuild the clean numbers from noisy ones (``model.noise``)."""
    return Autoencoder(num_numeric, cardinalities, out_features, hidden_sizes, activation, dropout,
                       embedding_dim, noise=noise)


@register_model("variational_autoencoder")
def variational_autoencoder(num_numeric: int, cardinalities: list[int], out_features: int,
                            hidden_sizes: list[int] = (64, 16), activation: str = "relu",
                            dropout: float = 0.0, embedding_dim: int = 16) -> Autoencoder:
    """A variational autoencoder (Kingma & Welling 2014); ``ReconstructionLoss`` adds its KL term."""
    return Autoencoder(num_numeric, cardinalities, out_features, hidden_sizes, activation, dropout,
                       embedding_dim, variational=True)


for _family in (autoencoder, denoising_autoencoder, variational_autoencoder):
    _family.unsupervised = True


class ReconstructionLoss(nn.Module):
    """Mean squared error of the reconstruction, plus ``beta`` x the KL divergence per number for a
    variational ``model`` while it trains (the evidence lower bound, up to constants); validation
    scores the reconstruction alone, comparable across families."""

    def __init__(self, model: nn.Module, beta: float = 1.0):
        super().__init__()
        self.model, self.beta = [model], beta  # a list: not a submodule (no second copy of its weights)

    def forward(self, output: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None):
        error = (output - target).pow(2).mean(dim=1)
        model = self.model[0]
        kl = getattr(model, "kl_", None)
        if model.training and kl is not None and kl.shape[0] == error.shape[0]:  # validation: the error alone
            error = error + self.beta * kl / max(1, target.shape[1])
        if weight is None:
            return error.mean()
        return (error * weight).sum() / weight.sum()
