"""Small models and data shared by the trainer tests."""

from __future__ import annotations

import torch
from torch import nn

from trickbag.data import DeviceLoader, synthetic


def data(n=256, shape=(16,), classes=4, seed=0):
    return synthetic(num_train=n, num_test=128, shape=shape, num_classes=classes, seed=seed)


def mlp(in_features=16, classes=4, seed=0, bn=False):
    torch.manual_seed(seed)
    layers = [nn.Linear(in_features, 32)]
    if bn:
        layers.append(nn.BatchNorm1d(32))
    layers += [nn.ReLU(), nn.Linear(32, classes)]
    return nn.Sequential(*layers)


def loaders(splits, batch=32, seed=0):
    return DeviceLoader(splits.train, batch, seed=seed), DeviceLoader(splits.test, 64, shuffle=False)


class Recorder:
    """A callback factory that records what it sees at each event."""

    @staticmethod
    def make(events=None):
        from trickbag.train.callbacks import Callback
        from trickbag.train.events import Event

        events = events or list(Event)

        class _Rec(Callback):
            def __init__(self):
                self.log = []

        for ev in events:
            def method(self, state, ev=ev):
                self.log.append((ev.value, state.step, state.epoch))
            setattr(_Rec, ev.method, method)
        return _Rec()
