"""Max-norm: the function equals a by-hand rescaling, the hook runs after every step, the callback
constrains the named weights in the trainer."""

from __future__ import annotations

import pytest
import torch

from trickbag.optim import attach_max_norm, max_norm_


def test_max_norm_rescales_only_rows_above_the_radius(gen):
    w = torch.randn(6, 5, generator=gen) * 3
    reference = w.double().clone()
    norms = reference.norm(dim=1, keepdim=True)
    reference = reference * torch.clamp(2.0 / norms, max=1.0)
    max_norm_([w], 2.0)
    torch.testing.assert_close(w.double(), reference, rtol=1e-6, atol=1e-6)
    small = torch.full((3, 2), 0.1)
    max_norm_([small], 2.0)
    assert torch.equal(small, torch.full((3, 2), 0.1))  # inside the ball: untouched
    with pytest.raises(ValueError, match="max_norm must be > 0, got 0"):
        max_norm_([w], 0)


def test_the_hook_constrains_after_every_step_and_detaches(gen):
    layer = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(layer.parameters(), lr=50.0)
    handle = attach_max_norm(opt, [layer.weight], 0.5)
    for _ in range(3):
        layer(torch.randn(8, 4, generator=gen)).pow(2).sum().backward()
        opt.step()
        assert (layer.weight.norm(dim=1) <= 0.5 + 1e-6).all()
    handle.remove()
    layer(torch.randn(8, 4, generator=gen)).pow(2).sum().backward()
    opt.step()
    assert (layer.weight.norm(dim=1) > 0.5 + 1e-3).any()


def test_the_callback_constrains_the_named_weights_in_the_trainer():
    from trickbag.data import DeviceLoader, synthetic
    from trickbag.models import text_cnn
    from trickbag.train import Trainer
    from trickbag.train.callbacks import MaxNorm

    data = synthetic(num_train=128, num_test=32, shape=(10,), num_classes=2, vocab_size=40)
    torch.manual_seed(0)
    model = text_cnn(40, 2, embed_dim=8, num_filters=4, embed_init=0.25)
    Trainer(model, DeviceLoader(data.train, 32), callbacks=[MaxNorm("fc.weight", 0.05)],
            optimizer={"name": "sgd", "lr": 1.0}, epochs=2, progress=False).fit()
    assert (model.fc.weight.norm(dim=1) <= 0.05 + 1e-6).all()
    assert model.embedding.weight.norm(dim=1).max() > 0.05  # other weights are free
    with pytest.raises(ValueError, match="no parameter name contains 'classifier'"):
        Trainer(model, DeviceLoader(data.train, 32), callbacks=[MaxNorm("classifier")], steps=1, progress=False).fit()
