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

__all__ = [
    "SCHEMES",
    "init_weights",
    "zero_init_residual_",
    "identity_init_",
    "patch_whitening_weights",
    "init_patch_whitening_",
    "EmbeddingInit",
    "load_pretrained_embeddings",
]

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


@torch.no_grad()
def identity_init_(model: nn.Module) -> int:
    """Start every 3x3 (or any odd square) convolution with identity filters on its first
    ``min(in, out)`` output channels, the other filters keeping their random initialisation:
    each block of a plain network starts close to passing its input through, while the extra
    channels still break symmetry (the airbench recipes' partial Dirac init).

    Returns the number of convolutions changed; raises if there were none.

    Example:
        >>> import torch
        >>> conv = torch.nn.Conv2d(4, 6, 3, padding=1)
        >>> identity_init_(torch.nn.Sequential(conv))
        1
        >>> x = torch.randn(1, 4, 5, 5)
        >>> bool(torch.allclose(conv(x)[:, :4] - conv.bias[:4, None, None], x, atol=1e-6))
        True

    Reference: Zagoruyko, Komodakis, "DiracNets", arXiv 2017; Jordan, "94% on CIFAR-10 in 3.29
    Seconds on a Single GPU", arXiv:2404.00498, 2024.
    """
    count = 0
    for m in model.modules():
        if not isinstance(m, nn.Conv2d) or m.groups != 1:
            continue
        kh, kw = m.kernel_size
        if kh != kw or kh % 2 == 0 or kh == 1:
            continue
        w = m.weight
        nn.init.dirac_(w[: min(w.shape[0], w.shape[1])])
        count += 1
    if count == 0:
        raise ValueError(f"identity_init: {type(model).__name__} has no ungrouped odd square convolution (3x3, 5x5 ...)")
    return count


@torch.no_grad()
def patch_whitening_weights(images: Tensor, kernel_size: int = 2, *, eps: float = 5e-4, mode: str = "pca") -> Tensor:
    r"""Convolution filters that whiten the ``kernel_size`` x ``kernel_size`` patches of ``images``.

    With :math:`\Sigma = V \Lambda V^\top` the second-moment matrix of the flattened patches
    (``C k^2`` values each; inputs are usually normalised, so it is their covariance):

    - ``"pca"``: rows :math:`\Lambda^{-1/2} V^\top` (largest eigenvalue first), as in the
      airbench recipes;
    - ``"zca"``: rows :math:`V \Lambda^{-1/2} V^\top` (the same space, rotated back to look like
      the input);

    each followed by its negative, so a ReLU-like activation keeps both signs: ``2 C k^2``
    filters in all. The first half maps the patches to (nearly, by ``eps``) identity covariance.

    Args:
        images: ``(N, C, H, W)`` training images (a few thousand suffice), as the model sees them.
        kernel_size: the patch size ``k``.
        eps: added to every eigenvalue.
        mode: ``"pca"`` or ``"zca"``.

    Returns:
        A ``(2 C k^2, C, k, k)`` weight in the images' floating dtype (float32 for integers).

    Example:
        >>> import torch
        >>> x = torch.randn(64, 3, 8, 8) * torch.tensor([1.0, 2.0, 3.0])[:, None, None]
        >>> w = patch_whitening_weights(x, 2)
        >>> w.shape
        torch.Size([24, 3, 2, 2])

    Reference: Coates, Ng, "Learning Feature Representations with K-means", Neural Networks:
    Tricks of the Trade, 2012 (patch whitening); Page, "How to Train Your ResNet", 2018;
    Jordan, arXiv:2404.00498, 2024.
    """
    check_choice("mode", mode, ("pca", "zca"))
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    k = kernel_size
    if not isinstance(k, int) or k < 1 or k > min(images.shape[2:]):
        raise ValueError(f"kernel_size must be an integer from 1 to {min(images.shape[2:])}, got {k!r}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    c = images.shape[1]
    dtype = images.dtype if images.is_floating_point() else torch.float32
    cov = torch.zeros(c * k * k, c * k * k, dtype=torch.float64, device=images.device)
    count = 0
    for chunk in images.split(512):  # bounded memory: the patches of 512 images at a time
        patches = chunk.double().unfold(2, k, 1).unfold(3, k, 1)  # (n, C, H', W', k, k)
        flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
        cov += flat.T @ flat
        count += flat.shape[0]
    cov /= count
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
    rows = eigenvectors.T / torch.sqrt(eigenvalues.clamp_min(0) + eps)[:, None]  # Lambda^-1/2 V^T
    if mode == "zca":
        rows = eigenvectors @ rows
    weight = rows.reshape(-1, c, k, k)
    return torch.cat([weight, -weight]).to(dtype)


@torch.no_grad()
def init_patch_whitening_(conv: nn.Conv2d, images: Tensor, *, eps: float = 5e-4, mode: str = "pca",
                          trainable: bool = False) -> nn.Conv2d:
    """Set ``conv``'s filters to :func:`patch_whitening_weights` of ``images`` (its kernel size,
    ``2 C k^2`` output channels), zero its bias, and freeze the filters unless ``trainable``.

    Example:
        >>> import torch
        >>> conv = torch.nn.Conv2d(3, 24, 2)
        >>> _ = init_patch_whitening_(conv, torch.randn(32, 3, 8, 8))
        >>> conv.weight.requires_grad
        False
    """
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"patch whitening initialises an nn.Conv2d, got {type(conv).__name__}")
    kh, kw = conv.kernel_size
    c = images.shape[1] if images.dim() == 4 else None
    if kh != kw or conv.in_channels != c or conv.out_channels != 2 * conv.in_channels * kh * kw or conv.groups != 1:
        raise ValueError(
            f"patch whitening needs a square, ungrouped Conv2d with in_channels = the images' channels ({c}) "
            f"and out_channels = 2 * in * k * k; got in={conv.in_channels}, out={conv.out_channels}, "
            f"kernel={conv.kernel_size}, groups={conv.groups}"
        )
    weight = patch_whitening_weights(images.to(conv.weight.device), kh, eps=eps, mode=mode)
    conv.weight.copy_(weight.to(conv.weight.dtype))
    conv.weight.requires_grad_(trainable)
    if conv.bias is not None:
        conv.bias.zero_()
    return conv


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
