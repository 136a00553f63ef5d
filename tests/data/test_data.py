"""Real data sets, image folders with broken files, the text data, and the device loader."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from trickbag.data import ArrayDataset, DeviceLoader, TorchLoader, fashion_mnist, image_folder, mr_polarity, split_off
from trickbag.data import vision

SHARED = Path(__file__).parents[2].parent / "shared" / "data"
PIL = pytest.importorskip("PIL.Image", reason="Pillow is not installed (extra: images)")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TRICKBAG_CACHE", str(tmp_path / "cache"))


def test_fashion_mnist_from_debian_package():
    if not vision.DEBIAN_FMNIST.exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
    s = fashion_mnist(download=False)
    assert s.train.inputs.shape == (60000, 1, 28, 28) and s.test.inputs.shape == (10000, 1, 28, 28)
    assert s.train.inputs.dtype == torch.uint8 and s.num_classes == 10
    assert torch.bincount(s.train.targets).tolist() == [6000] * 10
    assert s.train.classes[9] == "Ankle boot"


def test_fashion_mnist_missing_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setattr(vision, "DEBIAN_FMNIST", tmp_path / "no-debian")
    monkeypatch.delenv("TRICKBAG_DATA", raising=False)
    with pytest.raises(FileNotFoundError) as err:
        fashion_mnist(tmp_path / "nowhere", download=False)
    msg = str(err.value)
    assert "nowhere" in msg and "no-debian" in msg and "apt-get install dataset-fashion-mnist" in msg


def _png(color, size=(4, 4), mode="RGB"):
    buf = io.BytesIO()
    PIL.new(mode, size, color).save(buf, format="PNG")
    return buf.getvalue()


def make_folder(root: Path, layout=("train", "test")):
    for split in layout:
        for cls, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(3):
                (d / f"{i}.png").write_bytes(_png(color))
    return root


def test_image_folder_plain_and_tar_gz(tmp_path):
    folder = make_folder(tmp_path / "pack")
    s = image_folder(folder)
    assert s.train.classes == ["cat", "dog"] and s.train.inputs.shape == (6, 3, 4, 4)
    assert s.test is not None and len(s.test) == 6
    assert s.train.inputs[s.train.targets == 0][:, 0].eq(255).all()  # cats are red
    archive = tmp_path / "pack.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="pack")
    t = image_folder(archive)
    assert torch.equal(t.train.inputs, s.train.inputs) and torch.equal(t.train.targets, s.train.targets)
    cached = list((tmp_path / "cache").glob("image_folder-pack.tar.gz-*.pt"))
    assert len(cached) == 1
    again = image_folder(archive)  # from the cache
    assert torch.equal(again.train.inputs, t.train.inputs)


def test_image_folder_without_splits_and_grey_images(tmp_path):
    root = tmp_path / "flat"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        (root / cls / "x.png").write_bytes(_png(128, mode="L"))
    s = image_folder(root)
    assert s.train.inputs.shape == (2, 1, 4, 4) and s.test is None


def test_corrupt_and_odd_files_are_named_or_skipped(tmp_path):
    root = make_folder(tmp_path / "pack", layout=("train",))
    (root / "train" / "cat" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"cannot use train/cat/broken.png: .* on_error='skip'"):
        image_folder(root)
    with pytest.warns(UserWarning, match="skipping train/cat/broken.png"):
        s = image_folder(root, on_error="skip")
    assert len(s.train) == 6
    (root / "train" / "cat" / "broken.png").unlink()
    (root / "train" / "dog" / "big.png").write_bytes(_png((0, 0, 0), size=(8, 8)))
    with pytest.raises(ValueError, match=r"big.png: image size \(8, 8, 3\) differs"):
        image_folder(root)
    with pytest.raises(FileNotFoundError):
        image_folder(tmp_path / "missing")


def test_cifar_pickles_load_and_code_is_refused(tmp_path, monkeypatch):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}, f)
    monkeypatch.delenv("TRICKBAG_DATA", raising=False)
    s = vision.cifar10(tmp_path, download=False)
    assert s.train.inputs.shape == (20, 3, 32, 32) and s.test.targets.tolist() == [0, 1, 2, 3]

    class Evil:
        def __reduce__(self):
            return (eval, ("1 + 1",))

    with open(d / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.eval"):
        vision.cifar10(tmp_path, download=False)


@pytest.mark.slow
def test_cifar10_jpeg_pack_from_shared_data():
    pack = SHARED / "cifar10-jpeg.tar.gz"
    if not pack.exists():
        pytest.skip(f"the CIFAR-10 pack is not here ({pack}); it lives in shared/data beside the project")
    s = image_folder(pack)
    assert s.train.inputs.shape == (50000, 3, 32, 32) and s.test.inputs.shape == (10000, 3, 32, 32)
    assert s.train.classes[:3] == ["airplane", "automobile", "bird"]
    assert torch.bincount(s.test.targets).tolist() == [1000] * 10


def test_mr_polarity_from_shared_data():
    path = SHARED / "rt-polarity"
    if not path.exists():
        pytest.skip(f"the MR data is not here ({path})")
    s = mr_polarity(path, seed=0)
    assert len(s.train) + len(s.test) == 10662 and len(s.test) == 1066
    assert s.vocab["<pad>"] == 0 and s.vocab["<unk>"] == 1
    assert s.train.inputs.dtype == torch.int64 and s.train.inputs.shape[1] == s.info["max_len"]
    assert (s.test.inputs == 1).any()  # words seen only in the test split are unknown: no leakage
    assert torch.bincount(s.train.targets).tolist()[0] == pytest.approx(4798, abs=60)


def test_validation_split_is_stratified_and_fixed():
    data = ArrayDataset(torch.arange(1000.0)[:, None], torch.arange(1000) % 10)
    a_train, a_val = split_off(data, 0.1, seed=0)
    b_train, b_val = split_off(data, 0.1, seed=0)
    assert torch.equal(a_val.inputs, b_val.inputs) and torch.bincount(a_val.targets).tolist() == [10] * 10
    assert set(a_train.inputs.flatten().tolist()).isdisjoint(a_val.inputs.flatten().tolist())


def test_device_loader_permutations_resume_and_shards():
    data = ArrayDataset(torch.arange(100.0)[:, None], torch.arange(100))
    loader = DeviceLoader(data, 10, seed=1)
    epoch0 = torch.cat([y for _, y in loader])
    epoch1 = torch.cat([y for _, y in loader])
    assert sorted(epoch0.tolist()) == list(range(100)) and not torch.equal(epoch0, epoch1)
    again = DeviceLoader(data, 10, seed=1)
    assert torch.equal(torch.cat([y for _, y in again]), epoch0)
    partial = DeviceLoader(data, 10, seed=1)
    it = iter(partial)
    [next(it) for _ in range(4)]
    state = partial.state_dict()
    resumed = DeviceLoader(data, 10, seed=1)
    resumed.load_state_dict(state)
    assert torch.equal(torch.cat([y for _, y in resumed]), epoch0[40:])
    shards = [torch.cat([y for _, y in DeviceLoader(data, 10, seed=1, rank=r, world_size=3)]) for r in range(3)]
    assert all(len(s) == 30 for s in shards)
    union = torch.cat(shards)
    assert len(set(union.tolist())) == 90
    with pytest.raises(ValueError, match=r"rank must be in \[0, world_size=2\)"):
        DeviceLoader(data, 10, rank=2, world_size=2)
    with pytest.raises(ValueError, match="give no full batch"):
        DeviceLoader(data, 1000)


def test_device_loader_normalises_and_augments_on_the_device():
    from trickbag.augment import HFlip, fit_normalizer

    images = torch.randint(0, 256, (20, 1, 4, 4), dtype=torch.uint8)
    data = ArrayDataset(images, torch.zeros(20, dtype=torch.long))
    norm = fit_normalizer(images)
    x, _ = next(iter(DeviceLoader(data, 20, shuffle=False, normalize=norm)))
    torch.testing.assert_close(x, norm(images))
    x, _ = next(iter(DeviceLoader(data, 20, shuffle=False, normalize=norm, augment=HFlip(p=1.0), channels_last=True)))
    torch.testing.assert_close(x, norm(images).flip(3))
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_torch_loader_gives_the_same_examples():
    data = ArrayDataset(torch.arange(50.0)[:, None], torch.arange(50))
    loader = TorchLoader(data, 8, seed=0)
    assert len(loader) == 6
    assert sorted(torch.cat([y for _, y in loader]).tolist()) == sorted(torch.cat([y for _, y in TorchLoader(data, 8, seed=0)]).tolist())


def test_symmetric_label_noise_flips_an_exact_share_uniformly_to_other_classes():
    from scipy import stats

    from trickbag.data import symmetric_label_noise

    y = torch.arange(20000) % 10
    noisy, mask = symmetric_label_noise(y, 0.4, 10, seed=3)
    flipped = noisy != y
    assert torch.equal(mask, flipped)
    assert int(flipped.sum()) == 8000 and y.tolist() == (torch.arange(20000) % 10).tolist()  # input untouched
    # each flipped label lands uniformly on the nine other classes: T[i, j] = rate / (C - 1)
    shift = ((noisy[flipped] - y[flipped]) % 10).tolist()
    counts = [shift.count(k) for k in range(1, 10)]
    assert 0 not in shift and stats.chisquare(counts).pvalue > 0.001
    # and flips hit every class alike
    assert stats.chisquare(torch.bincount(y[flipped], minlength=10).tolist()).pvalue > 0.001
    assert torch.equal(noisy, symmetric_label_noise(y, 0.4, 10, seed=3)[0])
    assert not torch.equal(noisy, symmetric_label_noise(y, 0.4, 10, seed=4)[0])
    assert torch.equal(symmetric_label_noise(y, 0.0, 10)[0], y)
    for bad in (1.0, -0.1, "0.4", True):
        with pytest.raises(ValueError, match="label noise rate must be a fraction in"):
            symmetric_label_noise(y, bad, 10)
    with pytest.raises(ValueError, match="num_classes >= 2"):
        symmetric_label_noise(y, 0.2, 1)
    with pytest.raises(ValueError, match="integer class indices"):
        symmetric_label_noise(y.float(), 0.2, 10)


def test_label_noise_in_a_config_touches_the_training_labels_only():
    from trickbag.train.build import load_splits
    from trickbag.train.config import load_config

    raw = {"data": {"name": "synthetic", "options": {"num_train": 1000, "num_test": 200, "num_classes": 5},
                    "val_fraction": 0.2, "subset": 600}}
    clean = load_splits(load_config(raw))
    noisy = load_splits(load_config(raw, ["data.label_noise=0.3"]))
    assert torch.equal(clean.train.inputs, noisy.train.inputs)
    # 30% of the 800 training labels flip before the subset of 600 is drawn: about 180 of them
    assert abs(int((clean.train.targets != noisy.train.targets).sum()) - 180) < 40
    assert torch.equal(clean.val.targets, noisy.val.targets) and torch.equal(clean.test.targets, noisy.test.targets)
    with pytest.raises(ValueError, match="label noise rate must be a fraction in \\[0, 1\\), got 1.5"):
        load_splits(load_config(raw, ["data.label_noise=1.5"]))


def test_eval_subset_samples_the_evaluation_splits_only():
    from trickbag.train.build import load_splits
    from trickbag.train.config import load_config

    raw = {"data": {"name": "synthetic", "options": {"num_train": 1000, "num_test": 400, "num_classes": 5},
                    "val_fraction": 0.2, "eval_subset": 100}}
    splits = load_splits(load_config(raw))
    assert len(splits.train) > 700 and len(splits.val) == 100 and len(splits.test) == 100  # (stratified val split)
    again = load_splits(load_config(raw))
    assert torch.equal(splits.test.targets, again.test.targets)  # a fixed sample
