"""Kim's (2014) convolutional network for sentence classification."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from trickbag._validate import check_positive_int, check_range
from trickbag.init import load_pretrained_embeddings
from trickbag.layers import make_activation

__all__ = ["TextCNN", "text_cnn"]


class TextCNN(nn.Module):
    """Embedding, parallel 1-D convolutions of several widths, max-over-time pooling, dropout
    and a linear head (Kim 2014). The embedding is a module named ``embedding`` (the target of
    embedding-space adversarial training)."""

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        *,
        embed_dim: int = 128,
        filter_sizes: Sequence[int] = (3, 4, 5),
        num_filters: int = 100,
        dropout: float = 0.5,
        activation: str = "relu",
        padding_idx: int = 0,
        embed_init: float | None = None,
    ):
        super().__init__()
        check_positive_int("vocab_size", vocab_size)
        check_range("dropout", dropout, 0.0, 1.0, high_open=True)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        if embed_init is not None:
            check_range("embed_init", embed_init, 0.0, float("inf"), low_open=True)
            with torch.no_grad():
                self.embedding.weight.uniform_(-embed_init, embed_init)
                self.embedding.weight[padding_idx].zero_()
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, num_filters, k) for k in filter_sizes)
        self.act = make_activation(activation)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_filters * len(filter_sizes), num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embedding(tokens).transpose(1, 2)  # (N, E, L)
        pooled = [self.act(conv(x)).amax(dim=2) for conv in self.convs]
        return self.fc(self.dropout(torch.cat(pooled, dim=1)))


def text_cnn(
    vocab_size: int,
    num_classes: int,
    *,
    embed_dim: int = 128,
    filter_sizes: Sequence[int] = (3, 4, 5),
    num_filters: int = 100,
    dropout: float = 0.5,
    activation: str = "relu",
    pretrained: str | Path | Mapping[str, Sequence[float]] | None = None,
    vocab: Mapping[str, int] | None = None,
    freeze_embedding: bool = False,
    embed_init: float | None = None,
) -> TextCNN:
    """Kim's CNN, optionally with pre-trained word vectors (a word2vec/GloVe text file or a
    dict; ``vocab`` maps words to rows). The loading statistics are kept in
    ``model.embedding_init``. ``embed_init=a`` draws random embeddings from ``U[-a, a]``
    (Kim's CNN-rand: 0.25) instead of torch's ``N(0, 1)``.

    Example:
        >>> import torch
        >>> text_cnn(100, 2, embed_dim=16, num_filters=8)(torch.randint(0, 100, (3, 20))).shape
        torch.Size([3, 2])
    """
    model = TextCNN(vocab_size, num_classes, embed_dim=embed_dim, filter_sizes=filter_sizes,
                    num_filters=num_filters, dropout=dropout, activation=activation, embed_init=embed_init)
    if pretrained is not None:
        if vocab is None:
            raise ValueError("text_cnn(pretrained=...) needs the vocabulary (vocab=word -> row)")
        model.embedding_init = load_pretrained_embeddings(model.embedding, pretrained, vocab, freeze=freeze_embedding)
    return model
