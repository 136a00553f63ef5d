"""Label cleaning: confident learning against hand computations and cleanlab, the agreement
rule, active-learning scores, and planted label errors found end to end."""

from __future__ import annotations

import csv

import pytest
import torch

from trickbag.clean import (
    agreement_issues,
    confident_joint,
    confident_thresholds,
    find_label_issues,
    kfold,
    label_quality,
    parse_models,
    precision_recall,
    rank,
    rank_unlabeled,
    run,
)
from trickbag.cli import main


def noisy_problem(n=600, c=4, rate=0.15, seed=0):
    """Probabilities of a decent model on data with `rate` flipped labels: (probs, given, truth)."""
    g = torch.Generator().manual_seed(seed)
    true = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(n, c, generator=g) + 3.0 * torch.nn.functional.one_hot(true, c)
    given = true.clone()
    flip = torch.rand(n, generator=g) < rate
    given[flip] = (true[flip] + torch.randint(1, c, (int(flip.sum()),), generator=g)) % c
    return logits.softmax(1).double(), given, given != true


def test_thresholds_and_joint_by_hand():
    p = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 0])
    t = confident_thresholds(p, y)
    assert torch.allclose(t, torch.tensor([(0.9 + 0.6 + 0.2) / 3, 0.7], dtype=torch.float64))
    joint, cls = confident_joint(p, y)
    # example 0: p0 0.9 >= 0.567 -> 0; example 1: 0.6 >= 0.567 -> 0; example 2: p1 0.7 >= 0.7 -> 1;
    # example 3 (labelled 0): p1 0.8 >= 0.7, p0 0.2 < 0.567 -> 1
    assert cls.tolist() == [0, 0, 1, 1]
    assert joint.tolist() == [[2, 1], [0, 1]]


def test_label_issues_find_planted_errors_and_beat_the_naive_rule():
    probs, given, truth = noisy_problem()
    for method in ("prune_by_noise_rate", "confident_joint"):
        flags = find_label_issues(probs, given, filter_by=method)
        pr = precision_recall(flags, truth)
        assert pr["recall"] > 0.7 and pr["precision"] > 0.7, (method, pr)
    naive = find_label_issues(probs, given, filter_by="argmax")
    assert torch.equal(naive, probs.argmax(1) != given)
    with pytest.raises(ValueError, match="unknown filter_by 'prune'"):
        find_label_issues(probs, given, filter_by="prune")
    with pytest.raises(ValueError, match="labels must be in 0..3"):
        find_label_issues(probs, given + 4)


def test_agrees_with_cleanlab_on_the_same_probabilities():
    cleanlab_filter = pytest.importorskip("cleanlab.filter")
    probs, given, _ = noisy_problem(n=1000, seed=3)
    ours = find_label_issues(probs, given)
    theirs = torch.from_numpy(cleanlab_filter.find_label_issues(given.numpy(), probs.numpy(), filter_by="prune_by_noise_rate"))
    jaccard = (ours & theirs).sum() / (ours | theirs).sum()
    assert jaccard > 0.9, (int(ours.sum()), int(theirs.sum()), float(jaccard))


def test_agreement_rule_and_quality_scores():
    a = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7]])
    b = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4]])
    y = torch.tensor([0, 0, 0])
    flags, cls = agreement_issues([a, b], y)
    assert flags.tolist() == [False, True, False] and cls.tolist() == [-1, 1, -1]
    flags, cls = agreement_issues([a, b], y, min_agree=1, min_confidence=0.5)
    assert flags.tolist() == [False, True, True] and cls[2].item() == 2  # mean p_2 = 0.55 for example 2
    with pytest.raises(ValueError, match="min_agree must be at most the number of models"):
        agreement_issues([a, b], y, min_agree=3)
    q = label_quality(a, torch.tensor([0, 0, 2]))
    assert torch.allclose(q, torch.tensor([0.9, 0.1, 0.7], dtype=torch.float64))
    m = label_quality(a, torch.tensor([0, 0, 2]), "normalized_margin")
    assert torch.allclose(m, torch.tensor([0.8, -0.7, 0.5], dtype=torch.float64) / 2 + 0.5)  # (p_y - max other + 1) / 2


def test_rank_unlabeled_scores_by_hand():
    p1 = torch.tensor([[0.98, 0.02], [0.55, 0.45], [0.9, 0.1]], dtype=torch.float64)
    p2 = torch.tensor([[0.96, 0.04], [0.45, 0.55], [0.1, 0.9]], dtype=torch.float64)
    mean = (p1 + p2) / 2
    lc = rank_unlabeled([p1, p2], "least_confidence")
    assert torch.allclose(lc, 1 - mean.max(1).values)
    margin = rank_unlabeled([p1, p2], "margin")
    assert torch.allclose(margin, 1 - (mean.max(1).values - mean.min(1).values))
    dis = rank_unlabeled([p1, p2], "disagreement")
    kl = lambda p, q: (p * (p / q).log()).sum(1)  # noqa: E731
    assert torch.allclose(dis, (kl(p1, mean) + kl(p2, mean)) / 2, atol=1e-9)
    assert dis.argmax().item() == 2 and margin.argmax().item() in (1, 2)  # the models disagree on example 2
    with pytest.raises(ValueError, match="disagreement needs at least two models"):
        rank_unlabeled([p1], "disagreement")


def test_kfold_is_stratified_and_models_parse():
    y = torch.arange(36) % 3
    fold = kfold(y, 3, seed=1)
    for f in range(3):
        assert torch.bincount(y[fold == f], minlength=3).tolist() == [4, 4, 4]
    assert parse_models("mlp:hidden=[8],small_cnn:width=4") == [{"name": "mlp", "hidden": [8]}, {"name": "small_cnn", "width": 4}]


def config(tmp_path, rate=0.2):
    return {
        "data": {"name": "synthetic", "options": {"num_train": 400, "num_test": 100, "shape": [8], "num_classes": 3,
                                                  "noise": 0.6, "seed": 1},
                 "batch_size": 32, "val_fraction": 0.2, "label_noise": {"rate": rate, "seed": 0}},
        "model": {"name": "mlp", "hidden": [16]},
        "optimizer": {"name": "adamw", "lr": 0.01},
        "train": {"epochs": 5, "threads": 1, "progress": False, "checkpoint_every_epochs": None, "device": "cpu"},
    }


def test_clean_finds_planted_errors_and_writes_a_view_that_trains(tmp_path):
    """End to end on a tiny data set: 20% planted errors, two model types, 3 folds."""
    from trickbag.train.build import build_run, load_splits
    from trickbag.train.config import load_config

    out = tmp_path / "clean"
    result = run(config(tmp_path), "mlp:hidden=[16],mlp:hidden=[32]", folds=3, out=out, compare_cleanlab=False,
                 progress=False)
    rules = result["noise"]["rules"]
    assert result["noise"]["mislabelled"] == 64  # 20% of the 320 training examples
    assert rules["confident learning"]["recall"] > 0.8 and rules["confident learning"]["precision"] > 0.6, rules
    rows = list(csv.DictReader(open(out / "suspects.csv")))
    assert len(rows) == result["suspects"] > 0
    assert float(rows[0]["given_prob"]) <= float(rows[-1]["given_prob"])  # least trustworthy first
    assert {"given", "suggested", "given_prob", "confident_learning", "agreement"} <= set(rows[0])
    cleaned = load_config(out / "cleaned.yaml")
    assert cleaned.data.exclude == "excluded.txt"
    assert len(load_splits(cleaned).train) == 320 - result["suspects"]
    run_ = build_run(cleaned)
    assert run_.fit()["test"]["test_acc"] > 0.6
    assert (out / "report.md").read_text().count("precision") >= 1


def test_cli_clean_rank_unlabeled(tmp_path, capsys):
    import yaml

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path, rate=0.0)))
    assert main(["clean", "--config", str(cfg), "--rank-unlabeled", "--models", "mlp:hidden=[16],mlp:hidden=[8]",
                 "--out", str(tmp_path / "rank"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "least_confidence" in out and "disagreement" in out
    rows = list(csv.DictReader(open(tmp_path / "rank" / "to_label.csv")))
    assert len(rows) == 80 and float(rows[0]["margin"]) >= float(rows[-1]["margin"])
    result = rank(cfg, "mlp:hidden=[16]", out=tmp_path / "rank1", progress=False)
    assert set(result["rankings"]) == {"least_confidence", "margin"}  # disagreement needs two models
