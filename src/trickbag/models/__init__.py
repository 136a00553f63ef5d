"""Small reference models whose options wire in the layer tricks."""

from trickbag.models.speedrun import SpeedrunNet, speedrun_cnn
from trickbag.models.text import TextCNN, text_cnn
from trickbag.models.vision import ResNet, mlp, resnet_cifar, small_cnn

MODELS = {"mlp": mlp, "small_cnn": small_cnn, "resnet_cifar": resnet_cifar, "speedrun_cnn": speedrun_cnn,
          "text_cnn": text_cnn}

__all__ = ["MODELS", "ResNet", "SpeedrunNet", "TextCNN", "mlp", "resnet_cifar", "small_cnn", "speedrun_cnn", "text_cnn"]
