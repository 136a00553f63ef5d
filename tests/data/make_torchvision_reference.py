"""Record torchvision.ops.sigmoid_focal_loss on fixed inputs (peer-library reference).

torchvision's CPU wheels do not import beside the CPU torch used in CI, so its output is
recorded once where it does import (the GPU machine: torch 2.11, torchvision 0.26) and kept
in torchvision_sigmoid_focal.pt; tests/losses/test_focal.py compares trickbag against it.

Run: python tests/data/make_torchvision_reference.py
"""

from pathlib import Path

import torch
import torchvision
from torchvision.ops import sigmoid_focal_loss

gen = torch.Generator().manual_seed(2017)
inputs = torch.randn(64, 9, generator=gen) * 3
targets = (torch.rand(64, 9, generator=gen) > 0.8).float()
cases = []
for gamma, alpha, reduction in [(2.0, 0.25, "none"), (0.0, 0.25, "mean"), (1.0, -1.0, "sum"), (3.5, 0.9, "none")]:
    out = sigmoid_focal_loss(inputs, targets, alpha=alpha, gamma=gamma, reduction=reduction)
    cases.append({"gamma": gamma, "alpha": alpha, "reduction": reduction, "output": out})
path = Path(__file__).with_name("torchvision_sigmoid_focal.pt")
torch.save({"torchvision": torchvision.__version__, "inputs": inputs, "targets": targets, "cases": cases}, path)
print(f"recorded torchvision {torchvision.__version__} outputs to {path}")
