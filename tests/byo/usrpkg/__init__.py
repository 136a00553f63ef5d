"""A user's own package, outside trickbag: a model, data, a loss, a metric and a trick, named
in configs by import path (tests/train/test_bring_your_own.py runs it through every tool)."""
