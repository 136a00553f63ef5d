"""Weight initialisation schemes and pre-trained word embeddings."""

from __future__ import annotations

import gzip
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from trickbag._validate import check_choice

__all__ = ["SCHEMES", "init_weights", "zero_init_residual_", "EmbeddingInit", "load_pretrained_embeddings"]

SCHEMES = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal", "dirac")
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# torch.nn.init.calculate_gain knows these; smooth ReLU-likes use ReLU's gain.
_GAIN_NAME = {"gelu": "relu", "silu": "relu", "swish": "relu", "mish": "relu", "elu": "relu", "identity": "linear"}


def _gain(nonlinearity: str, negative_slope: float) -> float:
    name = _GAIN_NAME.get(nonlinearity, nonlinearity)
    try:
        return nn.init.calculate_gain(name, negative_slope if name == "leaky_relu" else None)
    except ValueError:
        raise ValueError(
            f"unknown nonlinearity {nonlinearity!r}; valid: linear, sigmoid, tanh, relu, leaky_relu, selu, "
            f"{', '.join(_GAIN_NAME)}"
        ) from None


def _fan(weight: Tensor, mode: str) -> int:
    fan_in = weight.shape[1] * weight[0][0].numel() if weight.dim() > 2 else weight.shape[1]
    fan_out = weight.shape[0] * weight[0][0].numel() if weight.dim() > 2 else weight.shape[0]
    return fan_in if mode == "fan_in" else fan_out


@torch.no_grad()
def init_weights(
    model: nn.Module,
    scheme: str,
    *,
    nonlinearity: str = "relu",
    mode: str = "fan_in",
    negative_slope: float = 0.0,
    zero_last_norm: bool = False,
) -> nn.Module:
    r"""Initialise every convolution and linear weight of ``model`` in place; biases to zero.

    With gain :math:`g` from ``nonlinearity`` (``torch.nn.init.calculate_gain``; GELU, SiLU and
    Mish use ReLU's):

    - ``xavier_uniform`` / ``xavier_normal`` (Glorot and Bengio 2010): variance
      :math:`g^2 \cdot 2 / (\mathrm{fan_{in}} + \mathrm{fan_{out}})`;
    - ``kaiming_uniform`` / ``kaiming_normal`` (He et al. 2015): variance
      :math:`g^2 / \mathrm{fan}` with ``mode`` ``"fan_in"`` (keeps forward activations' scale)
      or ``"fan_out"`` (keeps gradients' scale);
    - ``orthogonal`` (Saxe et al. 2014): the weight, flattened to ``(out, fan_in)``, has
      orthonormal rows (or columns) times :math:`g`;
    - ``dirac``: 3x3 convolutions start as the identity on the first ``min(in, out)`` channels
      of every group (a depthwise convolution passes every channel through); other layers get
      ``kaiming_normal``.

    Normalisation layers are reset to weight 1, bias 0. ``zero_last_norm`` then zeroes the last
    norm of every residual block (see :func:`zero_init_residual_`).

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(1000, 1000)
        >>> _ = init_weights(lin, "kaiming_normal")
        >>> round(lin.weight.std().item() ** 2 * 1000, 1)  # variance 2 / fan_in
        2.0
    """
    check_choice("scheme", scheme, SCHEMES)
    check_choice("mode", mode, ("fan_in", "fan_out"))
    gain = _gain(nonlinearity, negative_slope)
    for m in model.modules():
        if isinstance(m, _WEIGHTED):
            w = m.weight
            if scheme in ("xavier_uniform", "xavier_normal"):
                getattr(nn.init, scheme + "_")(w, gain=gain)
            elif scheme in ("kaiming_uniform", "kaiming_normal") or (scheme == "dirac" and not _is_3x3(m)):
                std = gain / math.sqrt(_fan(w, mode))
                if scheme == "kaiming_uniform":
                    nn.init.uniform_(w, -math.sqrt(3.0) * std, math.sqrt(3.0) * std)
                else:
                    nn.init.normal_(w, 0.0, std)
            elif scheme == "orthogonal":
                nn.init.orthogonal_(w, gain=gain)
            else:
                nn.init.dirac_(w, groups=m.groups)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    if zero_last_norm:
        zero_init_residual_(model)
    return model


def _is_3x3(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and tuple(m.kernel_size) == (3, 3)


@torch.no_grad()
def zero_init_residual_(model: nn.Module) -> int:
    """Zero the last normalisation scale of every residual block, so each starts as the identity.

    Recognises trickbag's :class:`~trickbag.layers.ResidualBlock` (anything with a
    ``last_norm``) and torchvision's ``BasicBlock`` (``bn2``) and ``Bottleneck`` (``bn3``).
    Returns the number of blocks changed; raises if there were none.

    Reference: Goyal et al., "Accurate, Large Minibatch SGD", 2017 (zero-gamma);
    Zhang, Dauphin, Ma, "Fixup Initialization", ICLR 2019.
    """
    count = 0
    for m in model.modules():
        norm = getattr(m, "last_norm", None)
        if norm is None and type(m).__name__ == "BasicBlock":
            norm = getattr(m, "bn2", None)
        if norm is None and type(m).__name__ == "Bottleneck":
            norm = getattr(m, "bn3", None)
        if isinstance(norm, nn.Module) and getattr(norm, "weight", None) is not None:
            norm.weight.zero_()
            count += 1
        elif hasattr(m, "zero_init_last_"):
            m.zero_init_last_()
            count += 1
    if count == 0:
        raise ValueError(f"zero_last_norm: {type(model).__name__} has no residual block with a last norm")
    return count


class EmbeddingInit(NamedTuple):
    """What :func:`load_pretrained_embeddings` did: words found, and words left at random."""

    found: int
    random: int


def _read_vectors(path: Path, wanted: set[str], dim: int) -> dict[str, list[float]]:
    opener = gzip.open if path.suffix == ".gz" else open
    vectors: dict[str, list[float]] = {}
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip().split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                if int(parts[1]) != dim:
                    raise ValueError(f"{path}: vectors have dimension {parts[1]}, the embedding has {dim}")
                continue  # word2vec text header: "count dim"
            word = parts[0]
            if word not in wanted or word in vectors:
                continue
            if len(parts) - 1 != dim:
                raise ValueError(f"{path}:{lineno}: {word!r} has {len(parts) - 1} values, the embedding has {dim}")
            vectors[word] = [float(v) for v in parts[1:]]
    return vectors


@torch.no_grad()
def load_pretrained_embeddings(
    embedding: nn.Embedding,
    vectors: Mapping[str, Sequence[float] | Tensor] | str | Path,
    vocab: Mapping[str, int] | Sequence[str],
    *,
    freeze: bool = False,
) -> EmbeddingInit:
    """Fill the rows of ``embedding`` for the words that have pre-trained vectors.

    Args:
        embedding: the ``nn.Embedding`` to fill in place; rows of words without a vector keep
            their random initialisation.
        vectors: a dict word -> vector, or the path of a word2vec or GloVe text file
            (optionally ``.gz``; a word2vec ``count dim`` header line is recognised). Only the
            vocabulary's words are kept while reading.
        vocab: word -> row index, or a list of words (row = position).
        freeze: stop training the embedding (``requires_grad=False``).

    Returns:
        ``EmbeddingInit(found, random)``: how many vocabulary words got a vector, and how many
        were left at random.

    Example:
        >>> import torch
        >>> emb = torch.nn.Embedding(3, 2)
        >>> load_pretrained_embeddings(emb, {"good": [1.0, 2.0]}, ["<pad>", "good", "bad"])
        EmbeddingInit(found=1, random=2)
        >>> emb.weight[1]
        tensor([1., 2.], grad_fn=<SelectBackward0>)

    Reference: Kim, "Convolutional Neural Networks for Sentence Classification", EMNLP 2014.
    """
    index = dict(vocab) if isinstance(vocab, Mapping) else {w: i for i, w in enumerate(vocab)}
    dim, rows = embedding.embedding_dim, embedding.num_embeddings
    bad = [w for w, i in index.items() if not 0 <= i < rows]
    if bad:
        raise ValueError(f"vocabulary index out of range for an embedding of {rows} rows: {bad[:3]}")
    if isinstance(vectors, (str, Path)):
        path = Path(vectors)
        if not path.exists():
            raise FileNotFoundError(f"pre-trained vectors file not found: {path}")
        vectors = _read_vectors(path, set(index), dim)
    found = 0
    for word, i in index.items():
        vec = vectors.get(word)
        if vec is None:
            continue
        vec = torch.as_tensor(vec, dtype=embedding.weight.dtype)
        if vec.shape != (dim,):
            raise ValueError(f"vector for {word!r} has shape {tuple(vec.shape)}, the embedding needs ({dim},)")
        embedding.weight[i] = vec.to(embedding.weight.device)
        found += 1
    if freeze:
        embedding.weight.requires_grad_(False)
    return EmbeddingInit(found=found, random=len(index) - found)
