"""The user's trick: a callback registered in trickbag's catalog when this module is imported
(configs list it under `plugins:`)."""

import torch

from trickbag import catalog
from trickbag.train.callbacks import Callback


class ShrinkWeights(Callback):
    """Multiply every weight matrix by ``factor`` after each update (a crude weight decay)."""

    touches = frozenset({"weights"})

    def __init__(self, factor=0.999):
        self.factor = factor

    @torch.no_grad()
    def on_step_end(self, state):
        for p in state.raw_model.parameters():
            if p.dim() >= 2:
                p.mul_(self.factor)


catalog.register(catalog.Trick(
    "shrink_weights", "regularizer", "Multiply the weight matrices by a factor after each update.",
    "A. User. Shrinking Weights Helps. 2026.", "usrpkg.tricks:ShrinkWeights", "usrpkg.tricks:ShrinkWeights",
    callback="usrpkg.tricks:ShrinkWeights", use="callback", defaults={"factor": 0.999}), replace=True)
