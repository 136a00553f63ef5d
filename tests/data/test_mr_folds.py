"""MR cross-validation folds and Kim's tokenisation (the real data, skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trickbag.data import mr_polarity
from trickbag.data.text import kim_tokens
from trickbag.models import text_cnn

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "rt-polarity"


def test_kim_tokens_split_clitics_and_drop_symbols():
    assert kim_tokens("it's the rock's \"best\" film , isn't it ?") == \
        ["it", "'s", "the", "rock", "'s", "best", "film", ",", "is", "n't", "it", "?"]


@pytest.mark.skipif(not DATA.exists(), reason="the MR data (../shared/data/rt-polarity) is not here")
def test_ten_folds_partition_the_data_and_vocabularies_come_from_training_folds():
    folds = [mr_polarity(DATA, folds=10, fold=k, tokenizer="kim") for k in range(10)]
    sizes = [len(f.test) for f in folds]
    assert sum(sizes) == 10662 and max(sizes) - min(sizes) <= 1
    assert all(len(f.train) + len(f.test) == 10662 for f in folds)
    assert sum(int(f.test.targets.sum()) for f in folds) == 5331  # every positive sentence tested once
    first = folds[0]
    assert folds[0].vocab != folds[1].vocab  # built on each fold's training part only
    whitespace = mr_polarity(DATA, folds=10, fold=0)
    assert len(whitespace.vocab) > len(first.vocab)  # Kim's cleaning merges "film's" with "film", drops symbols
    with pytest.raises(ValueError, match="fold in \\[0, folds\\)"):
        mr_polarity(DATA, folds=10, fold=10)
    with pytest.raises(ValueError, match="tokenizer must be"):
        mr_polarity(DATA, tokenizer="bert")


def test_text_cnn_uniform_embedding_init():
    torch.manual_seed(0)
    net = text_cnn(500, 2, embed_dim=16, embed_init=0.25)
    w = net.embedding.weight.detach()
    assert w[1:].abs().max() <= 0.25 and w[1:].std() == pytest.approx(0.25 / 3**0.5, rel=0.05)
    assert torch.equal(w[0], torch.zeros(16))  # the padding row stays zero
