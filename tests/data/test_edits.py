"""Long-tailed subsets, injected label noise and excluded examples, as functions and as
data options of a config."""

from __future__ import annotations

import pytest
import torch

from trickbag.data import (
    ArrayDataset,
    exclude,
    long_tail_counts,
    long_tailed,
    read_exclusions,
    symmetric_label_noise,
    write_exclusions,
)


def test_long_tail_counts_follow_the_exponential_profile():
    counts = long_tail_counts(5000, 10, 100)
    assert counts == [int(5000 * 100 ** (-c / 9)) for c in range(10)]
    assert counts[0] / counts[-1] == 100 and sum(counts) == 12406  # Cui et al.'s long-tailed CIFAR-10
    assert long_tail_counts(100, 4, 10, "step") == [100, 100, 10, 10]
    with pytest.raises(ValueError, match="imbalance_ratio must be >= 1"):
        long_tail_counts(100, 4, 0.5)
    with pytest.raises(ValueError, match="unknown profile 'linear'"):
        long_tail_counts(100, 4, 10, "linear")


def test_long_tailed_keeps_a_fixed_random_subset_per_class():
    data = ArrayDataset(torch.arange(1000.0)[:, None], torch.arange(1000) % 10)
    lt = long_tailed(data, 100, seed=3)
    assert torch.bincount(lt.targets).tolist() == long_tail_counts(100, 10, 100)
    assert torch.equal(lt.inputs, long_tailed(data, 100, seed=3).inputs)
    assert not torch.equal(lt.inputs, long_tailed(data, 100, seed=4).inputs)


def test_symmetric_noise_flips_exactly_the_rate_to_other_classes():
    y = torch.arange(1000) % 10
    noisy, flipped = symmetric_label_noise(y, 0.2, seed=1)
    assert int(flipped.sum()) == 200 and torch.equal(noisy != y, flipped)
    # every other class is about equally likely
    shift = (noisy[flipped] - y[flipped]) % 10
    assert set(shift.tolist()) == set(range(1, 10))
    assert torch.equal(symmetric_label_noise(y, 0.0)[0], y)


def test_noise_is_spread_evenly_over_a_subset_drawn_with_the_same_seed():
    """Regression: the noise's permutation once equalled subset()'s for equal seeds, so a
    10% noisy data set gave a subset with 57% wrong labels."""
    from trickbag.data import subset

    y = torch.arange(20000) % 10
    noisy = ArrayDataset(torch.zeros(20000, 1), symmetric_label_noise(y, 0.1, seed=0)[0])
    part = subset(noisy, 5000, seed=0)
    clean = subset(ArrayDataset(torch.zeros(20000, 1), y), 5000, seed=0)
    rate = (part.targets != clean.targets).double().mean().item()
    assert 0.08 < rate < 0.12, rate


def test_exclusions_round_trip_and_refuse_another_split(tmp_path):
    path = write_exclusions(tmp_path / "x.txt", [4, 1, 1], size=6)
    assert read_exclusions(path, 6).tolist() == [1, 4]
    with pytest.raises(ValueError, match="training split of 6 examples, but this data config's has 7"):
        read_exclusions(path, 7)
    data = ArrayDataset(torch.arange(6.0)[:, None], torch.arange(6))
    assert exclude(data, read_exclusions(path, 6)).targets.tolist() == [0, 2, 3, 5]


def test_data_options_in_a_config(tmp_path):
    from trickbag.train.build import load_splits
    from trickbag.train.config import load_config

    base = {"data": {"name": "synthetic", "options": {"num_train": 500, "num_test": 50, "shape": [4], "num_classes": 5},
                     "val_fraction": 0.2}}
    plain = load_splits(load_config(base))
    lt = load_splits(load_config(base, ["data.long_tail={imbalance_ratio: 10}"]))
    assert torch.equal(lt.val.targets, plain.val.targets)  # the validation split stays balanced
    assert torch.bincount(lt.train.targets).tolist() == long_tail_counts(int(torch.bincount(plain.train.targets).min()), 5, 10)
    noisy = load_splits(load_config(base, ["data.label_noise={rate: 0.25, seed: 2}"]))
    assert int((noisy.train.targets != plain.train.targets).sum()) == 100
    assert torch.equal(noisy.test.targets, plain.test.targets)
    write_exclusions(tmp_path / "ex.txt", range(10), size=len(plain.train))
    cleaned = load_splits(load_config(base, [f"data.exclude={tmp_path / 'ex.txt'}"]))
    assert torch.equal(cleaned.train.targets, plain.train.targets[10:])
    with pytest.raises(ValueError, match="unknown parameter for data.long_tail 'ratio'"):
        load_splits(load_config(base, ["data.long_tail={ratio: 10}"]))
    with pytest.raises(ValueError, match="data.label_noise must be a rate such as 0.2 or a mapping"):
        load_splits(load_config(base, ["data.label_noise=[0.2]"]))
    # a bare rate is shorthand for {rate: r, seed: data.split_seed}
    short = load_splits(load_config(base, ["data.label_noise=0.2", "data.split_seed=3"])).train.targets
    long = load_splits(load_config(base, ["data.label_noise={rate: 0.2, seed: 3}", "data.split_seed=3"])).train.targets
    assert torch.equal(short, long)
