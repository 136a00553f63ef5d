"""trickbag: the classic deep-learning training tricks as tested PyTorch functions, modules and
callbacks, and tools that measure which of them help on your data."""

__version__ = "0.1.0"

__all__ = ["__version__"]
