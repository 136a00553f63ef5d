"""Data: real data sets (decoded once, cached), splits and device-resident loaders."""

from trickbag.data.core import ArrayDataset, Splits, cache_dir, split_off, subset
from trickbag.data.edits import exclude, read_exclusions, symmetric_label_noise, with_label_noise, write_exclusions
from trickbag.data.imbalance import long_tail_counts, long_tailed
from trickbag.data.loader import DeviceLoader, TorchLoader
from trickbag.data.synthetic import synthetic
from trickbag.data.text import mr_polarity
from trickbag.data.vision import cifar10, fashion_mnist, image_folder

__all__ = [
    "ArrayDataset",
    "DeviceLoader",
    "Splits",
    "TorchLoader",
    "cache_dir",
    "cifar10",
    "exclude",
    "fashion_mnist",
    "image_folder",
    "long_tail_counts",
    "long_tailed",
    "mr_polarity",
    "read_exclusions",
    "split_off",
    "subset",
    "symmetric_label_noise",
    "synthetic",
    "with_label_noise",
    "write_exclusions",
]
