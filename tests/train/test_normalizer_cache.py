import torch
from trickbag.train.build.data import _normalizer


def test_normalizer_cache_never_serves_a_freed_draw_of_the_same_shape():
    # Fit on one draw, drop it, fit on another draw of the same shape: ids and storage can be
    # reused by the allocator, and the second draw must still get its own statistics.
    means = []
    for value in (0.0, 1.0, 2.0, 3.0):
        images = torch.full((8, 1, 4, 4), value) + torch.arange(8.0).view(8, 1, 1, 1)
        means.append(float(_normalizer(images).mean.flatten()[0]))
        del images
    assert means == sorted(set(means)) and len(means) == 4
