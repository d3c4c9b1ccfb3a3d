"""Building blocks shared by model families: activations with fitting initialisation, embeddings."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def init_linear(layer: nn.Linear, activation: str) -> None:
    """He initialisation for ReLU-like activations, Glorot for saturating ones."""
    if activation in ("tanh", "sigmoid"):
        gain = nn.init.calculate_gain(activation)
        nn.init.xavier_uniform_(layer.weight, gain=gain)
    else:
        slope = 0.01 if activation == "leaky_relu" else 0.0
        nn.init.kaiming_uniform_(layer.weight, a=slope, nonlinearity="leaky_relu")
    nn.init.zeros_(layer.bias)


def embedding_width(cardinality: int, cap: int) -> int:
    """fastai's rule of thumb, capped: 1.6 * n ** 0.56."""
    return max(1, min(cap, round(1.6 * cardinality**0.56)))


class CategoryEmbeddings(nn.Module):
    """One embedding table per coded column (code 0 = unknown), outputs concatenated."""

    def __init__(self, cardinalities: list[int], cap: int):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(n, embedding_width(n, cap)) for n in cardinalities)
        self.out_features = sum(t.embedding_dim for t in self.tables)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.cat([table(codes[:, i]) for i, table in enumerate(self.tables)], dim=1)


NUMBER_EMBEDDINGS = ("none", "periodic", "piecewise_linear")


def number_bins(numeric: torch.Tensor, n_bins: int = 48) -> list[list[float]]:
    """Bin edges of each number column for piecewise-linear embeddings: the training rows'
    quantiles (``rtdl_num_embeddings.compute_bins``), one bin for a column with one value."""
    import warnings

    import rtdl_num_embeddings

    numeric = torch.as_tensor(numeric, dtype=torch.float32)
    varied = [i for i in range(numeric.shape[1]) if torch.unique(numeric[:, i]).numel() > 1]
    edges: dict[int, list[float]] = {}
    if varied:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*has just two bin edges")  # a 0/1 column
            computed = rtdl_num_embeddings.compute_bins(numeric[:, varied],
                                                        n_bins=min(n_bins, len(numeric) - 1))
        edges = {i: _without_slivers(b.tolist()) for i, b in zip(varied, computed, strict=True)}
    return [edges[i] if i in edges else _one_bin(numeric[:, i]) for i in range(numeric.shape[1])]


def _without_slivers(edges: list[float], share: float = 1e-3) -> list[float]:
    """``edges`` less each inner edge closer than ``share`` of the column's range to the edge kept
    before it. A bin 3.6e-7 wide (two training values 0.95082706 and 0.95082742 on a real table)
    scales its input by 2.8e6: one float32 step of the input moved the encoding by 0.17, so a
    prediction turned on the input's last bit (the ONNX graph, rounding once more, differed by
    1.8e-4 of the value). Such a bin holds next to nothing; 0.1% of the range keeps a float32 step
    of the input under 2e-5 of the encoding.

    Example:
        >>> _without_slivers([0.0, 0.5, 0.5000001, 1.0])
        [0.0, 0.5, 1.0]
    """
    least = share * (edges[-1] - edges[0])
    kept = [edges[0]]
    for edge in edges[1:-1]:
        if edge - kept[-1] >= least:
            kept.append(edge)
    if edges[-1] - kept[-1] < least and len(kept) > 1:
        kept.pop()
    return [*kept, edges[-1]]


def _one_bin(column: torch.Tensor) -> list[float]:
    value = float(column[0]) if len(column) else 0.0
    return [value, value + 1.0]


def number_embedding(kind: str, num_numeric: int, width: int, bins: list[list[float]] | None = None):
    """``rtdl-num-embeddings``' module for ``kind`` (Gorishniy et al., 2022): ``periodic`` (learned
    sin/cos features, the PLR variant) or ``piecewise_linear`` (the number's position in its
    column's quantile bins, then a linear map: PLE, version B). Output: (rows, columns, width)."""
    import rtdl_num_embeddings

    if kind == "periodic":
        return rtdl_num_embeddings.PeriodicEmbeddings(num_numeric, width, lite=False)
    if kind != "piecewise_linear":
        raise ValueError(f"number embeddings are one of {', '.join(NUMBER_EMBEDDINGS)}; got {kind!r}")
    if bins is None or len(bins) != num_numeric:
        raise ValueError("piecewise_linear embeddings need the bin edges of every number column"
                         " (fitwell computes them from the training rows)")
    import warnings

    with warnings.catch_warnings():  # a 0/1 column has one bin: a min-max scaling, as it should
        warnings.filterwarnings("ignore", message=".*has just two bin edges")
        edges = [torch.tensor(b, dtype=torch.float32) for b in bins]
        return rtdl_num_embeddings.PiecewiseLinearEmbeddings(edges, width, activation=False, version="B")


class NumberEmbeddings(nn.Module):
    """Each number column mapped to a ``width``-wide vector (``number_embedding``), concatenated."""

    def __init__(self, kind: str, num_numeric: int, width: int, bins: list[list[float]] | None = None):
        super().__init__()
        self.embed = number_embedding(kind, num_numeric, width, bins)
        self.out_features = num_numeric * width

    def forward(self, numeric: torch.Tensor) -> torch.Tensor:
        return self.embed(numeric).flatten(1)


class EncoderHead(nn.Module):
    """A family whose ``forward`` is ``head(encode(...))``; the combiner and transfer learning use
    ``encode`` and ``head`` separately."""

    def encode(self, numeric=None, codes=None, **inputs) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, numeric=None, codes=None, **inputs) -> torch.Tensor:
        return self.head(self.encode(numeric, codes, **inputs))


class ImageStem(nn.Module):
    """uint8 images (or floats in [0, 1] after augmentation) -> normalised floats, on the batch.

    The per-channel mean and std are the training split's, stored as buffers so they travel with
    the weights.
    """

    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        scaled = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
        return (scaled - self.mean) / self.std


def needs_input(family: str, inputs: dict | None, *keys: str) -> dict:
    """The spec of the first of ``keys`` present in ``inputs``, or a ValueError naming the key."""
    for key in keys:
        if inputs and key in inputs:
            return inputs[key]
    wanted = {"image": "data.image", "tokens": "data.text", "sequence": "data.sequence"}
    raise ValueError(f"model {family!r} needs {' or '.join(wanted[k] for k in keys)} in the data config")
