"""The user's data: two Gaussian blobs per class, as map-style torch datasets."""

import torch


class Blobs(torch.utils.data.Dataset):
    def __init__(self, n, classes, seed):
        g = torch.Generator().manual_seed(seed)
        self.y = torch.arange(n) % classes
        centres = torch.randn(classes, 6, generator=torch.Generator().manual_seed(99)) * 3
        self.x = centres[self.y] + torch.randn(n, 6, generator=g)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def load(n_train=240, classes=3):
    """Returns {'train', 'val', 'test'} torch datasets; trickbag reads them into tensors."""
    return {"train": Blobs(n_train, classes, 0), "val": Blobs(60, classes, 1), "test": Blobs(60, classes, 2)}


class DictBlobs(Blobs):
    """The same data as a Hugging Face-style dataset: each item a dict."""

    def __getitem__(self, i):
        return {"features": self.x[i], "target": int(self.y[i]), "id": i}


def load_dicts(n_train=240, classes=3):
    return {"train": DictBlobs(n_train, classes, 0), "val": DictBlobs(60, classes, 1)}
