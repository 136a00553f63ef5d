"""The user's loss: cross-entropy with a confidence penalty (calls are counted for the tests)."""

import torch.nn.functional as F
from torch import nn


class PenalisedCE(nn.Module):
    calls = 0

    def __init__(self, beta=0.1):
        super().__init__()
        self.beta = beta

    def forward(self, logits, targets):
        type(self).calls += 1
        logp = F.log_softmax(logits, 1)
        return F.nll_loss(logp, targets) + self.beta * (logp.exp() * logp).sum(1).mean()
