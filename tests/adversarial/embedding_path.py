"""PGD on a text model's embedding by its definition, shared by the embedding-attack tests."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F


def ascent_path(model, x, y, epsilon, alpha, steps):
    """The ascent path: delta_{t+1} = P(delta_t + alpha g_t / |g_t|), delta_0 = 0, g_t the
    embedding's gradient at delta_t, P the projection on the epsilon-ball. Returns the losses
    at delta_1 .. delta_K (detached) and delta_K."""
    clean = model.embedding.weight.detach()
    probe = copy.deepcopy(model)
    delta, losses = torch.zeros_like(clean), []
    for _ in range(steps):
        with torch.no_grad():
            probe.embedding.weight.copy_(clean + delta)
        probe.zero_grad()
        F.cross_entropy(probe(x), y).backward()
        g = probe.embedding.weight.grad
        delta = delta + alpha * g / g.norm()
        delta = delta * min(1.0, epsilon / delta.norm().item())
        with torch.no_grad():
            probe.embedding.weight.copy_(clean + delta)
            losses.append(F.cross_entropy(probe(x), y))
    return losses, delta
