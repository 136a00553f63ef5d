"""The user's model: its builder receives the data's input shape and class count."""

import math

from torch import nn


def build_net(input_shape, num_classes, hidden=16):
    """A small MLP over any input shape."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))


class Block(nn.Module):
    """A residual block that exposes its last norm, the contract zero_init_residual reads."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.last_norm = nn.BatchNorm2d(c)

    def forward(self, x):
        return x + self.last_norm(self.conv(x)).relu()


def build_cnn(input_shape, num_classes, width=8):
    c = input_shape[0]
    return nn.Sequential(nn.Conv2d(c, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(), Block(width),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes))
