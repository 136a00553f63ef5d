"""A small synthetic classification task, for tests and benchmarks that need no files."""

from __future__ import annotations

import torch

from trickbag.data.core import ArrayDataset, Splits

__all__ = ["synthetic"]


def synthetic(
    *,
    num_train: int = 2048,
    num_test: int = 512,
    shape: tuple[int, ...] = (32,),
    num_classes: int = 4,
    noise: float = 1.0,
    seed: int = 0,
    vocab_size: int | None = None,
    task: str = "classification",
) -> Splits:
    """Class prototypes plus Gaussian noise: learnable, deterministic for a seed, any shape.

    With ``vocab_size``, a text task instead: ``shape = (length,)`` token ids where each class
    prefers its own band of the vocabulary, with a vocabulary dict (``<pad>`` = 0).
    With ``task="regression"``: standard normal inputs ``(n, d)`` and targets ``x @ w + noise``
    of shape ``(n, 1)``; least squares on it has a Hessian close to ``2 I``.

    Example:
        >>> s = synthetic(num_train=100, num_test=20, shape=(1, 4, 4), num_classes=3)
        >>> s.train.inputs.shape, s.num_classes
        (torch.Size([100, 1, 4, 4]), 3)
    """
    gen = torch.Generator().manual_seed(seed)
    if task == "regression":
        w = torch.randn(shape[0], 1, generator=gen)

        def make_reg(n: int) -> ArrayDataset:
            x = torch.randn(n, shape[0], generator=gen)
            return ArrayDataset(x, x @ w + noise * 0.1 * torch.randn(n, 1, generator=gen))

        return Splits(make_reg(num_train), None, make_reg(num_test), name="synthetic")
    if task != "classification":
        raise ValueError(f"unknown task {task!r}; valid: classification, regression")
    if vocab_size is not None:
        return _text(num_train, num_test, shape[0], num_classes, vocab_size, noise, gen)
    prototypes = torch.randn(num_classes, *shape, generator=gen) * 1.5

    def make(n: int) -> ArrayDataset:
        y = torch.randint(0, num_classes, (n,), generator=gen)
        x = prototypes[y] + noise * torch.randn(n, *shape, generator=gen)
        return ArrayDataset(x, y, [f"class{i}" for i in range(num_classes)])

    return Splits(make(num_train), None, make(num_test), name="synthetic")


def _text(num_train: int, num_test: int, length: int, num_classes: int, vocab_size: int, noise: float, gen) -> Splits:
    band = max(1, (vocab_size - 1) // num_classes)

    def make(n: int) -> ArrayDataset:
        y = torch.randint(0, num_classes, (n,), generator=gen)
        own = 1 + y[:, None] * band + torch.randint(0, band, (n, length), generator=gen)
        rand = torch.randint(1, vocab_size, (n, length), generator=gen)
        pick = torch.rand(n, length, generator=gen) < min(noise, 1.0) * 0.5
        return ArrayDataset(torch.where(pick, rand, own).clamp_max(vocab_size - 1), y,
                            [f"class{i}" for i in range(num_classes)])

    vocab = {"<pad>": 0, **{f"w{i}": i for i in range(1, vocab_size)}}
    return Splits(make(num_train), None, make(num_test), name="synthetic", vocab=vocab)
