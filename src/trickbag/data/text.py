"""The sentence-polarity (MR) text data: tokenised, with a vocabulary and padding."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import torch

from trickbag.data.core import ArrayDataset, Splits

__all__ = ["mr_polarity", "encode", "kim_tokens", "PAD", "UNK"]

PAD, UNK = "<pad>", "<unk>"

_KIM_RULES = [
    (r"[^A-Za-z0-9(),!?\'\`]", " "), (r"\'s", " 's"), (r"\'ve", " 've"), (r"n\'t", " n't"), (r"\'re", " 're"),
    (r"\'d", " 'd"), (r"\'ll", " 'll"), (r",", " , "), (r"!", " ! "), (r"\(", " ( "), (r"\)", " ) "),
    (r"\?", " ? "), (r"\s{2,}", " "),
]


def kim_tokens(line: str) -> list[str]:
    """Kim's (2014) ``clean_str``: keep letters, digits and ``(),!?'```, split clitics
    (``'s``, ``n't``, ...) and punctuation off, lower-case.

    Example:
        >>> kim_tokens("co-writer/director peter jackson's expanded vision .")
        ['co', 'writer', 'director', 'peter', 'jackson', "'s", 'expanded', 'vision']
    """
    for pattern, repl in _KIM_RULES:
        line = re.sub(pattern, repl, line)
    return line.strip().lower().split()


def encode(sentences: list[list[str]], vocab: dict[str, int], max_len: int) -> torch.Tensor:
    """Token ids, truncated or padded with ``<pad>`` (id 0) to ``max_len``; unknown words map to
    ``<unk>`` (id 1)."""
    out = torch.zeros(len(sentences), max_len, dtype=torch.int64)
    unk = vocab[UNK]
    for i, words in enumerate(sentences):
        ids = [vocab.get(w, unk) for w in words[:max_len]]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
    return out


def mr_polarity(
    path: str | Path,
    *,
    test_fraction: float = 0.1,
    seed: int = 0,
    min_freq: int = 1,
    max_len: int | None = None,
    folds: int | None = None,
    fold: int = 0,
    tokenizer: str = "whitespace",
) -> Splits:
    """Movie-review sentence polarity v1.0 (Pang and Lee 2005): ``rt-polarity.pos`` and
    ``rt-polarity.neg`` in ``path``, one lower-cased, tokenised sentence per line.

    There is no official split: a fixed, seeded ``test_fraction`` is held out. The vocabulary
    (``<pad>`` = 0, ``<unk>`` = 1, then words seen ``min_freq`` times in the training part,
    most frequent first) comes from the training part only. Sentences are padded or truncated
    to ``max_len`` (default: the longest training sentence).

    Cross-validation as in Kim (2014): with ``folds`` (10), the seeded permutation is cut into
    ``folds`` equal parts and part ``fold`` is the test set (``test_fraction`` is then unused).
    ``tokenizer``: ``"whitespace"`` (the files' own tokens) or ``"kim"`` (:func:`kim_tokens`,
    Kim's preprocessing: clitics and punctuation split off, other symbols dropped).
    """
    if tokenizer not in ("whitespace", "kim"):
        raise ValueError(f"tokenizer must be 'whitespace' or 'kim', got {tokenizer!r}")
    if folds is not None and (not isinstance(folds, int) or folds < 2 or not isinstance(fold, int) or not 0 <= fold < folds):
        raise ValueError(f"folds must be an integer >= 2 and fold in [0, folds), got folds={folds!r}, fold={fold!r}")
    path = Path(path)
    files = {1: path / "rt-polarity.pos", 0: path / "rt-polarity.neg"}
    missing = [str(f) for f in files.values() if not f.exists()]
    if missing:
        raise FileNotFoundError(f"MR polarity data not found: {', '.join(missing)}")
    sentences, labels = [], []
    for label, file in files.items():
        for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
            words = kim_tokens(line) if tokenizer == "kim" else line.strip().split()
            if words:
                sentences.append(words)
                labels.append(label)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(sentences), generator=gen).tolist()
    if folds is None:
        n_test = round(test_fraction * len(sentences))
        test_idx, train_idx = perm[:n_test], perm[n_test:]
    else:
        lo, hi = fold * len(perm) // folds, (fold + 1) * len(perm) // folds
        test_idx, train_idx = perm[lo:hi], perm[:lo] + perm[hi:]
    counts = Counter(w for i in train_idx for w in sentences[i])
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    vocab = {PAD: 0, UNK: 1, **{w: i + 2 for i, w in enumerate(words)}}
    length = max_len or max(len(sentences[i]) for i in train_idx)
    y = torch.tensor(labels, dtype=torch.int64)
    classes = ["negative", "positive"]

    def make(idx: list[int]) -> ArrayDataset:
        return ArrayDataset(encode([sentences[i] for i in idx], vocab, length), y[idx], classes)

    return Splits(make(train_idx), None, make(test_idx), name="mr_polarity", vocab=vocab,
                  info={"source": str(path), "max_len": length, "vocab_size": len(vocab), "fold": fold if folds else None,
                        "folds": folds, "tokenizer": tokenizer})
