"""The trick catalog: one entry per trick, with its functions, wrapper, paper and method card.

Entries name their code by dotted path (``"trickbag.losses:focal_loss"``) and resolve it on
first use, so reading the catalog (``trickbag list``) imports nothing heavy, and no trick
module depends on this one.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trickbag._validate import unknown

__all__ = [
    "KINDS",
    "USES",
    "ENTRY_POINT_GROUP",
    "Trick",
    "TRICKS",
    "get",
    "names",
    "by_kind",
    "all_tricks",
    "register",
    "unregister",
    "card_path",
    "resolve",
]

KINDS = (
    "loss",
    "schedule",
    "optimizer",
    "gradient",
    "layer",
    "init",
    "augment",
    "adversarial",
    "regularizer",
    "loop",
    "tool",
)

#: How a trick enters a run configuration's ``tricks:`` list (see trickbag.train.config).
#: ``None``: a building block with no config form (used from Python, or by another trick).
USES = ("callback", "optimizer", "schedule", "model", "loss", "augment", None)

def _cards_dir() -> Path:
    """Where the method cards are: ``docs/tricks`` in a source checkout, else the copy a wheel
    installs under ``PREFIX/share/trickbag/tricks`` (the package sits in
    ``PREFIX/lib/pythonX.Y/site-packages``, or ``PREFIX/Lib/site-packages`` on Windows)."""
    here = Path(__file__).resolve()
    checkout = here.parents[2] / "docs" / "tricks"
    candidates = [checkout, *(here.parents[k] / "share" / "trickbag" / "tricks" for k in (4, 3)),
                  Path(sys.prefix) / "share" / "trickbag" / "tricks"]
    return next((c for c in candidates if c.is_dir()), checkout)


CARDS_DIR = _cards_dir()


def resolve(path: str) -> Any:
    """Import ``"package.module:attr"`` and return the attribute."""
    module, _, attr = path.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Trick:
    """One catalog entry.

    Attributes:
        name: unique, snake_case; also the method card's file name and the config name.
        kind: one of :data:`KINDS`.
        summary: one line.
        paper: the reference (authors, title, venue year).
        function: dotted path of the tier-1 function.
        wrapper: dotted path of the tier-2 PyTorch-native wrapper.
        callback: dotted path of the tier-3 trainer callback, for tricks that live in the loop.
        use: how the trick enters a run config (one of :data:`USES`).
        defaults: parameters used when a config names the trick without any.
        apply: for ``use="model"``, dotted path of ``apply(model, **params) -> model``.
        card_file: the method card of a trick registered from outside trickbag (a Markdown file
            with the card's sections); built-in tricks' cards are ``docs/tricks/NAME.md``.
    """

    name: str
    kind: str
    summary: str
    paper: str
    function: str
    wrapper: str
    callback: str | None = None
    use: str | None = None
    defaults: dict[str, Any] = field(default_factory=dict)
    apply: str | None = None
    card_file: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"trick {self.name!r}: unknown kind {self.kind!r}; valid: {KINDS}")
        if self.use not in USES:
            raise ValueError(f"trick {self.name!r}: unknown use {self.use!r}; valid: {USES}")
        if (self.use == "model") != (self.apply is not None):
            raise ValueError(f"trick {self.name!r}: model tricks, and only they, name an apply function")

    @property
    def card(self) -> Path:
        return Path(self.card_file) if self.card_file else card_path(self.name)

    def load_function(self) -> Any:
        return resolve(self.function)

    def load_wrapper(self) -> Any:
        return resolve(self.wrapper)

    def load_callback(self) -> Any:
        return resolve(self.callback) if self.callback else None

    def load_apply(self) -> Any:
        return resolve(self.apply) if self.apply else None


def card_path(name: str) -> Path:
    return CARDS_DIR / f"{name}.md"


_L = "trickbag.losses"
_S = "trickbag.schedules"
_O = "trickbag.optim"
_SCHED = f"{_S}:to_lr_scheduler"
_Y = "trickbag.layers"
_I = "trickbag.init"
_A = "trickbag.augment"
_V = "trickbag.adversarial"
_AUG = "trickbag.train.callbacks:Augment"
_ADV = "trickbag.train.callbacks:AdversarialTraining"
_CB = "trickbag.train.callbacks:"

TRICKS: tuple[Trick, ...] = (
    # ---- losses -------------------------------------------------------------------------
    Trick("focal_loss", "loss", "Down-weight easy examples: cross-entropy times (1 - p_t)^gamma.",
          "Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object Detection. ICCV 2017.",
          f"{_L}:focal_loss", f"{_L}:FocalLoss", use="loss", defaults={"gamma": 2.0}),
    Trick("sigmoid_focal_loss", "loss", "Focal loss on independent sigmoids, for binary and multi-label targets.",
          "Lin, Goyal, Girshick, He, Dollar. Focal Loss for Dense Object Detection. ICCV 2017.",
          f"{_L}:sigmoid_focal_loss", f"{_L}:SigmoidFocalLoss"),
    Trick("label_smoothing", "loss", "Train against (1 - eps) one-hot + eps / C instead of hard labels.",
          "Szegedy, Vanhoucke, Ioffe, Shlens, Wojna. Rethinking the Inception Architecture for "
          "Computer Vision. CVPR 2016.",
          f"{_L}:smooth_labels", f"{_L}:LabelSmoothingCrossEntropy",
          callback="trickbag.train.callbacks:LabelSmoothing", use="callback",
          defaults={"smoothing": 0.1}),
    Trick("wgan", "loss", "Wasserstein GAN losses: the critic estimates the Earth-Mover distance.",
          "Arjovsky, Chintala, Bottou. Wasserstein Generative Adversarial Networks. ICML 2017.",
          f"{_L}:critic_loss", f"{_L}:generator_loss"),
    Trick("gradient_penalty", "loss", "WGAN-GP: penalise the critic's gradient norm away from 1 on interpolates.",
          "Gulrajani, Ahmed, Arjovsky, Dumoulin, Courville. Improved Training of Wasserstein GANs. "
          "NeurIPS 2017.",
          f"{_L}:gradient_penalty", f"{_L}:critic_loss"),
    Trick("class_balanced", "loss", "Weight each class by its inverse effective number of samples (long-tailed data).",
          "Cui, Jia, Lin, Song, Belongie. Class-Balanced Loss Based on Effective Number of Samples. CVPR 2019.",
          f"{_L}:class_balanced_weights", f"{_L}:ClassBalancedLoss", callback=_CB + "ClassBalanced",
          use="callback", defaults={"beta": 0.9999}),
    Trick("logit_adjustment", "loss", "Add tau * log(class prior) to the logits in the loss: balanced error on long tails.",
          "Menon, Jayasumana, Rawat, Jain, Veit, Kumar. Long-Tail Learning via Logit Adjustment. ICLR 2021.",
          f"{_L}:logit_adjusted_cross_entropy", f"{_L}:LogitAdjustedLoss", callback=_CB + "LogitAdjustment",
          use="callback", defaults={"tau": 1.0}),
    Trick("uncertainty_weighting", "loss", "Multi-task loss weighted by learned task uncertainty: sum exp(-s_t) L_t + s_t / 2.",
          "Kendall, Gal, Cipolla. Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry "
          "and Semantics. CVPR 2018.",
          f"{_L}:uncertainty_weighted_loss", f"{_L}:MultiTaskLoss"),
    Trick("non_saturating_gan", "loss", "The original GAN: a logistic discriminator; the generator maximises log D(G(z)).",
          "Goodfellow, Pouget-Abadie, Mirza, Xu, Warde-Farley, Ozair, Courville, Bengio. Generative "
          "Adversarial Nets. NeurIPS 2014.",
          f"{_L}:non_saturating_loss", f"{_L}:discriminator_loss"),
    # ---- regularizers -------------------------------------------------------------------
    Trick("flooding", "regularizer", "Keep the training loss near a flood level b: gradient ascent below it.",
          "Ishida, Yamane, Sakai, Niu, Sugiyama. Do We Need Zero Training Loss After Achieving "
          "Zero Training Error? ICML 2020.",
          f"{_L}:flood", f"{_L}:Flooding", callback="trickbag.train.callbacks:Flooding",
          use="callback", defaults={"b": 0.05}),
    Trick("l1_penalty", "regularizer", "Add lambda * sum |w| over weights (not biases or norms) for sparsity.",
          "Tibshirani. Regression Shrinkage and Selection via the Lasso. JRSS-B 1996.",
          f"{_L}:l1_penalty", f"{_L}:penalized_parameters",
          callback="trickbag.train.callbacks:WeightPenalty", use="callback", defaults={"l1": 1e-5}),
    Trick("l2_penalty", "regularizer", "Add lambda/2 * sum w^2 over weights (not biases or norms).",
          "Krogh, Hertz. A Simple Weight Decay Can Improve Generalization. NeurIPS 1991.",
          f"{_L}:l2_penalty", f"{_L}:penalized_parameters",
          callback="trickbag.train.callbacks:WeightPenalty", use="callback", defaults={"l2": 5e-4}),
    Trick("soft_sharing", "regularizer", "Multi-task soft sharing: a model per task, penalising the distance between them.",
          "Duong, Cohn, Bird, Cook. Low Resource Dependency Parsing: Cross-lingual Parameter Sharing in a "
          "Neural Network Parser. ACL 2015.",
          f"{_L}:soft_sharing_penalty", "trickbag.multitask:SoftSharing", callback=_CB + "SoftSharingPenalty"),
    Trick("weight_clipping", "regularizer", "Clamp every parameter to [-c, c] (the original WGAN's Lipschitz constraint).",
          "Arjovsky, Chintala, Bottou. Wasserstein Generative Adversarial Networks. ICML 2017.",
          f"{_L}:clip_weights_", f"{_L}:clip_weights_"),
    Trick("max_norm", "regularizer", "After every update, cap each unit's incoming weight vector at L2 norm c.",
          "Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov. Dropout: A Simple Way to Prevent "
          "Neural Networks from Overfitting. JMLR 2014.",
          f"{_O}:max_norm_", f"{_O}:attach_max_norm", callback=_CB + "MaxNorm", use="callback",
          defaults={"target": "fc.weight", "max_norm": 3.0}),
    # ---- schedules ----------------------------------------------------------------------
    Trick("constant", "schedule", "The same learning rate at every step (the baseline schedule).",
          "Robbins, Monro. A Stochastic Approximation Method. Ann. Math. Stat. 1951.",
          f"{_S}:constant", _SCHED, use="schedule"),
    Trick("linear_warmup", "schedule", "Ramp the learning rate up linearly over the first steps.",
          "Goyal et al. Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour. arXiv 2017.",
          f"{_S}:linear_warmup", _SCHED, use="schedule", defaults={"warmup_epochs": 1}),
    Trick("step_decay", "schedule", "Multiply the learning rate by a factor every k steps.",
          "He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.",
          f"{_S}:step_decay", _SCHED, use="schedule", defaults={"every_epochs": 5, "factor": 0.5}),
    Trick("multistep", "schedule", "Multiply the learning rate by a factor at chosen milestones.",
          "He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.",
          f"{_S}:multistep", _SCHED, use="schedule", defaults={"milestones_epochs": [5, 8], "factor": 0.1}),
    Trick("exponential", "schedule", "Decay the learning rate by gamma every step.",
          "Bengio. Practical Recommendations for Gradient-Based Training of Deep Architectures. 2012.",
          f"{_S}:exponential", _SCHED, use="schedule", defaults={"gamma": 0.999}),
    Trick("linear_decay", "schedule", "Fall linearly from the base learning rate to a floor.",
          "Bengio. Practical Recommendations for Gradient-Based Training of Deep Architectures. 2012.",
          f"{_S}:linear_decay", _SCHED, use="schedule"),
    Trick("inverse_sqrt", "schedule", "Linear warmup, then decay as 1/sqrt(step) (the Transformer's schedule).",
          "Vaswani et al. Attention Is All You Need. NeurIPS 2017.",
          f"{_S}:inverse_sqrt", _SCHED, use="schedule", defaults={"warmup_epochs": 1}),
    Trick("cosine_decay", "schedule", "Half-cosine decay from the base learning rate to a floor.",
          "Loshchilov, Hutter. SGDR: Stochastic Gradient Descent with Warm Restarts. ICLR 2017.",
          f"{_S}:cosine_decay", _SCHED, use="schedule"),
    Trick("warmup_cosine", "schedule", "Linear warmup then cosine decay: join(linear_warmup, cosine_decay).",
          "Goyal et al. 2017 (warmup); Loshchilov, Hutter. SGDR. ICLR 2017 (cosine).",
          f"{_S}:warmup_cosine", _SCHED, use="schedule", defaults={"warmup_epochs": 1}),
    Trick("cyclic_cosine", "schedule", "Cosine annealing restarted every cycle, reaching the floor at each cycle's end.",
          "Huang, Li, Pleiss, Liu, Hopcroft, Weinberger. Snapshot Ensembles: Train 1, get M for "
          "Free. ICLR 2017.",
          f"{_S}:cyclic_cosine", _SCHED, use="schedule", defaults={"cycle_epochs": 2}),
    Trick("triangular", "schedule", "Cyclical learning rates: a triangle wave between a base and a peak.",
          "Smith. Cyclical Learning Rates for Training Neural Networks. WACV 2017.",
          f"{_S}:triangular", _SCHED, use="schedule",
          defaults={"base": 0.1, "peak": 1.0, "half_cycle_epochs": 1}),
    Trick("sgdr", "schedule", "Cosine annealing with warm restarts and cycles growing by cycle_mult.",
          "Loshchilov, Hutter. SGDR: Stochastic Gradient Descent with Warm Restarts. ICLR 2017.",
          f"{_S}:sgdr", _SCHED, use="schedule", defaults={"cycle_epochs": 1, "cycle_mult": 2}),
    Trick("warmup_cosine_restarts", "schedule", "Warm restarts with a linear warmup per cycle and peaks decaying by gamma.",
          "Loshchilov, Hutter. SGDR. ICLR 2017; the popular CosineAnnealingWarmUpRestarts variant.",
          f"{_S}:warmup_cosine_restarts", _SCHED, use="schedule",
          defaults={"cycle_epochs": 2, "warmup_epochs": 0.25, "gamma": 0.5}),
    Trick("one_cycle", "schedule", "1cycle: warm up to a high peak, then anneal far below the start.",
          "Smith, Topin. Super-Convergence: Very Fast Training of Neural Networks Using Large "
          "Learning Rates. 2019.",
          f"{_S}:one_cycle", _SCHED, use="schedule"),
    Trick("join", "schedule", "Chain schedules at step boundaries (warmup then cosine is a join).",
          "Babuschkin et al. The DeepMind JAX Ecosystem (optax join_schedules). 2020.",
          f"{_S}:join", _SCHED),
    # ---- optimizers ---------------------------------------------------------------------
    Trick("sgd", "optimizer", "SGD with (Nesterov) momentum, decayed weights only.",
          "Sutskever, Martens, Dahl, Hinton. On the Importance of Initialization and Momentum in "
          "Deep Learning. ICML 2013.",
          f"{_O}:create_optimizer", "torch.optim:SGD", use="optimizer",
          defaults={"momentum": 0.9, "nesterov": True}),
    Trick("adam", "optimizer", "Adam: per-parameter steps from first and second moment estimates.",
          "Kingma, Ba. Adam: A Method for Stochastic Optimization. ICLR 2015.",
          f"{_O}:create_optimizer", "torch.optim:Adam", use="optimizer", defaults={"lr": 1e-3}),
    Trick("adamw", "optimizer", "Adam with decoupled weight decay.",
          "Loshchilov, Hutter. Decoupled Weight Decay Regularization. ICLR 2019.",
          f"{_O}:create_optimizer", "torch.optim:AdamW", use="optimizer", defaults={"lr": 1e-3}),
    Trick("radam", "optimizer", "Rectified Adam: no warmup needed; fused=True runs trickbag's one-pass kernel.",
          "Liu et al. On the Variance of the Adaptive Learning Rate and Beyond. ICLR 2020.",
          f"{_O}:create_optimizer", f"{_O}:FusedRAdam", use="optimizer", defaults={"lr": 1e-3}),
    Trick("nadam", "optimizer", "Adam with Nesterov momentum.",
          "Dozat. Incorporating Nesterov Momentum into Adam. ICLR Workshop 2016.",
          f"{_O}:create_optimizer", "torch.optim:NAdam", use="optimizer", defaults={"lr": 1e-3}),
    Trick("adagrad", "optimizer", "Per-parameter steps scaled by accumulated squared gradients.",
          "Duchi, Hazan, Singer. Adaptive Subgradient Methods for Online Learning and Stochastic "
          "Optimization. JMLR 2011.",
          f"{_O}:create_optimizer", "torch.optim:Adagrad", use="optimizer", defaults={"lr": 1e-2}),
    Trick("rmsprop", "optimizer", "Steps scaled by a running average of squared gradients.",
          "Tieleman, Hinton. Lecture 6.5, RMSProp. COURSERA: Neural Networks for Machine Learning, 2012.",
          f"{_O}:create_optimizer", "torch.optim:RMSprop", use="optimizer", defaults={"lr": 1e-3}),
    Trick("muon", "optimizer", "Orthogonalised momentum (Newton-Schulz) for hidden matrices; SGD or AdamW for the rest.",
          "Jordan, Jin, Boza, You, Cesista, Newhouse, Bernstein. Muon: An Optimizer for Hidden Layers "
          "in Neural Networks. 2024.",
          f"{_O}:create_optimizer", f"{_O}:HybridMuon", use="optimizer", defaults={"lr": 0.02}),
    Trick("lookahead", "optimizer", "k fast steps with any optimizer, then one slow step back towards them.",
          "Zhang, Lucas, Hinton, Ba. Lookahead Optimizer: k steps forward, 1 step back. NeurIPS 2019.",
          f"{_O}:Lookahead", f"{_O}:Lookahead", use="optimizer", defaults={"k": 5, "alpha": 0.5}),
    # ---- gradient transforms --------------------------------------------------------------
    Trick("gradient_centralization", "gradient", "Subtract each weight gradient's mean over its fan-in before the step.",
          "Yong, Huang, Hua, Zhang. Gradient Centralization: A New Optimization Technique for Deep "
          "Neural Networks. ECCV 2020.",
          f"{_O}:centralize_gradients_", f"{_O}:attach_gradient_centralization",
          callback="trickbag.train.callbacks:GradientCentralization", use="callback"),
    Trick("gradient_clipping", "gradient", "Rescale gradients whose global norm exceeds a threshold (or clamp values).",
          "Pascanu, Mikolov, Bengio. On the Difficulty of Training Recurrent Neural Networks. ICML 2013.",
          "torch.nn.utils:clip_grad_norm_", f"{_O}:attach_grad_clipping",
          callback="trickbag.train.callbacks:GradientClipping", use="callback",
          defaults={"max_norm": 1.0}),
    Trick("gradient_noise", "gradient", "Add annealed Gaussian noise to the gradients before each step.",
          "Neelakantan, Vilnis, Le, Sutskever, Kaiser, Kurach, Martens. Adding Gradient Noise Improves "
          "Learning for Very Deep Networks. arXiv:1511.06807, 2015.",
          f"{_O}:add_gradient_noise_", f"{_O}:attach_gradient_noise",
          callback="trickbag.train.callbacks:GradientNoise", use="callback",
          defaults={"eta": 0.3, "gamma": 0.55}),
    # ---- layers ----------------------------------------------------------------------------
    Trick("blurpool", "layer", "Anti-aliased downsampling: blur with a binomial filter before subsampling.",
          "Zhang. Making Convolutional Networks Shift-Invariant Again. ICML 2019.",
          f"{_Y}:blur_pool2d", f"{_Y}:BlurPool2d", use="model", apply=f"{_Y}:apply_blurpool"),
    Trick("group_norm", "layer", "Normalise over groups of channels per example: no dependence on batch size.",
          "Wu, He. Group Normalization. ECCV 2018.",
          "torch.nn.functional:group_norm", f"{_Y}:apply_group_norm", use="model",
          apply=f"{_Y}:apply_group_norm", defaults={"groups": 32}),
    Trick("batch_norm", "layer", "Normalise each channel by batch statistics (and layer/instance variants).",
          "Ioffe, Szegedy. Batch Normalization: Accelerating Deep Network Training by Reducing "
          "Internal Covariate Shift. ICML 2015.",
          "torch.nn.functional:batch_norm", f"{_Y}:make_norm"),
    Trick("bn_options", "layer", "BatchNorm as short runs want it: no learned scale, fast running statistics.",
          "Page. How to Train Your ResNet. 2018; Jordan. 94% on CIFAR-10 in 3.29 Seconds on a Single "
          "GPU. arXiv:2404.00498, 2024.",
          "torch.nn.functional:batch_norm", f"{_Y}:apply_batchnorm_options", use="model",
          apply=f"{_Y}:apply_batchnorm_options", defaults={"momentum": 0.4, "learn_scale": False}),
    Trick("spectral_norm", "layer", "Divide each weight by its largest singular value (a 1-Lipschitz layer).",
          "Miyato, Kataoka, Koyama, Yoshida. Spectral Normalization for Generative Adversarial "
          "Networks. ICLR 2018.",
          "torch.nn.utils.parametrizations:spectral_norm", f"{_Y}:apply_spectral_norm", use="model",
          apply=f"{_Y}:apply_spectral_norm"),
    Trick("soft_threshold", "layer", "Shrink activations towards zero by learned per-channel thresholds.",
          "Zhao, Zhong, Fu, Tang, Pecht. Deep Residual Shrinkage Networks for Fault Diagnosis. "
          "IEEE TII 2020 (arXiv 2019).",
          f"{_Y}:soft_threshold", f"{_Y}:SoftThreshold"),
    Trick("shrinkage_block", "layer", "A residual block whose branch is soft-thresholded: denoises noisy inputs.",
          "Zhao, Zhong, Fu, Tang, Pecht. Deep Residual Shrinkage Networks for Fault Diagnosis. "
          "IEEE TII 2020 (arXiv 2019).",
          f"{_Y}:soft_threshold", f"{_Y}:ShrinkageResidualBlock"),
    Trick("residual_block", "layer", "Skip connections F(x) + x, with identity or 1x1 projection shortcuts.",
          "He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.",
          f"{_Y}:ResidualBlock", f"{_Y}:ResidualBlock"),
    Trick("activations", "layer", "ReLU-family activations by name: relu, leaky_relu, gelu, silu, mish, ...",
          "Nair, Hinton. Rectified Linear Units Improve Restricted Boltzmann Machines. ICML 2010.",
          f"{_Y}:make_activation", "torch.nn:ReLU"),
    Trick("hard_sharing", "layer", "Multi-task hard sharing: one shared trunk, a head per task, a weighted sum of losses.",
          "Caruana. Multitask Learning. Machine Learning 28, 1997.",
          f"{_L}:weighted_task_loss", "trickbag.multitask:MultiTask"),
    Trick("dropout", "layer", "Zero random activations during training (scaled), an implicit ensemble.",
          "Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov. Dropout: A Simple Way to "
          "Prevent Neural Networks from Overfitting. JMLR 2014.",
          "torch.nn.functional:dropout", "torch.nn:Dropout"),
    # ---- initialisation ----------------------------------------------------------------------
    Trick("xavier_init", "init", "Glorot initialisation: weight variance 2 / (fan_in + fan_out).",
          "Glorot, Bengio. Understanding the Difficulty of Training Deep Feedforward Neural "
          "Networks. AISTATS 2010.",
          f"{_I}:init_weights", "torch.nn.init:xavier_uniform_", use="model", apply=f"{_I}:init_weights",
          defaults={"scheme": "xavier_uniform", "nonlinearity": "linear"}),
    Trick("kaiming_init", "init", "He initialisation: weight variance 2 / fan for ReLU networks.",
          "He, Zhang, Ren, Sun. Delving Deep into Rectifiers: Surpassing Human-Level Performance "
          "on ImageNet Classification. ICCV 2015.",
          f"{_I}:init_weights", "torch.nn.init:kaiming_normal_", use="model", apply=f"{_I}:init_weights",
          defaults={"scheme": "kaiming_normal"}),
    Trick("orthogonal_init", "init", "Orthogonal weight matrices: every singular value equal to the gain.",
          "Saxe, McClelland, Ganguli. Exact Solutions to the Nonlinear Dynamics of Learning in "
          "Deep Linear Neural Networks. ICLR 2014.",
          f"{_I}:init_weights", "torch.nn.init:orthogonal_", use="model", apply=f"{_I}:init_weights",
          defaults={"scheme": "orthogonal"}),
    Trick("dirac_init", "init", "3x3 convolutions start as the identity map (Dirac delta kernels).",
          "Zagoruyko, Komodakis. DiracNets: Training Very Deep Neural Networks Without "
          "Skip-Connections. arXiv 2017.",
          f"{_I}:init_weights", "torch.nn.init:dirac_", use="model", apply=f"{_I}:init_weights",
          defaults={"scheme": "dirac"}),
    Trick("identity_init", "init", "3x3 convolutions start with identity filters on min(in, out) channels, the rest random.",
          "Zagoruyko, Komodakis. DiracNets. arXiv 2017; Jordan. 94% on CIFAR-10 in 3.29 Seconds on a "
          "Single GPU. arXiv:2404.00498, 2024.",
          f"{_I}:identity_init_", "torch.nn.init:dirac_", use="model", apply=f"{_I}:identity_init_"),
    Trick("patch_whitening", "init", "The first convolution whitens image patches (PCA of training patches, +-).",
          "Coates, Ng. Learning Feature Representations with K-means. Tricks of the Trade, 2012; "
          "Jordan. 94% on CIFAR-10 in 3.29 Seconds on a Single GPU. arXiv:2404.00498, 2024.",
          f"{_I}:patch_whitening_weights", f"{_I}:init_patch_whitening_", callback=_CB + "PatchWhitening",
          use="callback", defaults={"num_images": 5000}),
    Trick("zero_init_residual", "init", "Zero each residual block's last norm scale: blocks start as the identity.",
          "Goyal et al. Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour. arXiv 2017.",
          f"{_I}:zero_init_residual_", f"{_Y}:ResidualBlock", use="model", apply=f"{_I}:zero_init_residual_"),
    Trick("pretrained_embeddings", "init", "Initialise a text model's embedding from word2vec or GloVe vectors.",
          "Kim. Convolutional Neural Networks for Sentence Classification. EMNLP 2014.",
          f"{_I}:load_pretrained_embeddings", "torch.nn:Embedding"),
    # ---- augmentation and preprocessing -------------------------------------------------------
    Trick("normalize", "augment", "Zero-centre and scale each channel with statistics of the training set.",
          "LeCun, Bottou, Orr, Mueller. Efficient BackProp. Neural Networks: Tricks of the Trade, 1998.",
          f"{_A}:fit_normalizer", f"{_A}:Normalizer"),
    Trick("hflip", "augment", "Mirror images left-right at random.",
          "Krizhevsky, Sutskever, Hinton. ImageNet Classification with Deep Convolutional Neural "
          "Networks. NeurIPS 2012.",
          f"{_A}:hflip", f"{_A}:HFlip", callback=_AUG, use="augment"),
    Trick("alternating_flip", "augment", "Mirror each image in every other epoch (derandomised flipping).",
          "Jordan. 94% on CIFAR-10 in 3.29 Seconds on a Single GPU. arXiv:2404.00498, 2024.",
          f"{_A}:alternating_flip", f"{_A}:AlternatingFlip", use="augment"),
    Trick("vflip", "augment", "Mirror images top-bottom at random (for orientation-free data).",
          "Simard, Steinkraus, Platt. Best Practices for Convolutional Neural Networks Applied to "
          "Visual Document Analysis. ICDAR 2003.",
          f"{_A}:vflip", f"{_A}:VFlip", callback=_AUG, use="augment"),
    Trick("rotate", "augment", "Rotate images by a random angle about their centre.",
          "Simard, Steinkraus, Platt. Best Practices for Convolutional Neural Networks Applied to "
          "Visual Document Analysis. ICDAR 2003.",
          f"{_A}:rotate", f"{_A}:Rotate", callback=_AUG, use="augment", defaults={"max_degrees": 10.0}),
    Trick("translate", "augment", "Shift images by a random whole number of pixels.",
          "Simard, Steinkraus, Platt. Best Practices for Convolutional Neural Networks Applied to "
          "Visual Document Analysis. ICDAR 2003.",
          f"{_A}:translate", f"{_A}:Translate", callback=_AUG, use="augment", defaults={"max_pixels": 2}),
    Trick("scale", "augment", "Zoom images in or out by a random factor.",
          "Simard, Steinkraus, Platt. Best Practices for Convolutional Neural Networks Applied to "
          "Visual Document Analysis. ICDAR 2003.",
          f"{_A}:scale", f"{_A}:Scale", callback=_AUG, use="augment",
          defaults={"min_scale": 0.9, "max_scale": 1.1}),
    Trick("random_crop", "augment", "Pad by a few pixels and crop back at a random offset.",
          "Krizhevsky, Sutskever, Hinton. ImageNet Classification with Deep Convolutional Neural "
          "Networks. NeurIPS 2012.",
          f"{_A}:random_crop", f"{_A}:RandomCrop", callback=_AUG, use="augment", defaults={"padding": 4}),
    Trick("gaussian_noise", "augment", "Add Gaussian noise to the inputs.",
          "Bishop. Training with Noise is Equivalent to Tikhonov Regularization. Neural "
          "Computation 1995.",
          f"{_A}:gaussian_noise", f"{_A}:GaussianNoise", callback=_AUG, use="augment", defaults={"std": 0.1}),
    Trick("cutout", "augment", "Zero one random square per image.",
          "DeVries, Taylor. Improved Regularization of Convolutional Neural Networks with Cutout. "
          "arXiv 2017.",
          f"{_A}:cutout", f"{_A}:Cutout", callback=_AUG, use="augment", defaults={"size": 8}),
    Trick("tta", "augment", "Test-time augmentation: average the logits over mirrored and shifted views.",
          "Krizhevsky, Sutskever, Hinton. ImageNet Classification with Deep Convolutional Neural "
          "Networks. NeurIPS 2012; Jordan. 94% on CIFAR-10 in 3.29 Seconds on a Single GPU. 2024.",
          f"{_A}:tta_logits", f"{_A}:TTA", callback=_CB + "TestTimeAugmentation", use="callback",
          defaults={"flip": True, "translate": 1}),
    Trick("mixup", "augment", "Train on convex combinations of pairs of examples and of their targets.",
          "Zhang, Cisse, Dauphin, Lopez-Paz. mixup: Beyond Empirical Risk Minimization. ICLR 2018.",
          f"{_A}:mixup_batch", f"{_A}:mix_targets", callback="trickbag.train.callbacks:Mixup",
          use="callback", defaults={"alpha": 0.2}),
    Trick("cutmix", "augment", "Paste a box from another image; mix targets by the pasted area.",
          "Yun, Han, Oh, Chun, Choe, Yoo. CutMix: Regularization Strategy to Train Strong "
          "Classifiers with Localizable Features. ICCV 2019.",
          f"{_A}:cutmix_batch", f"{_A}:mix_targets", callback="trickbag.train.callbacks:CutMix",
          use="callback", defaults={"alpha": 1.0}),
    # ---- adversarial ---------------------------------------------------------------------------
    Trick("fgsm", "adversarial", "One signed-gradient step of size eps on the inputs.",
          "Goodfellow, Shlens, Szegedy. Explaining and Harnessing Adversarial Examples. ICLR 2015.",
          f"{_V}:fgsm", f"{_V}:fgsm", callback=_ADV, use="callback",
          defaults={"method": "fgsm", "eps": 0.03}),
    Trick("ifgsm", "adversarial", "Iterative FGSM: several small signed steps, projected to the eps-ball.",
          "Kurakin, Goodfellow, Bengio. Adversarial Examples in the Physical World. ICLR Workshop 2017.",
          f"{_V}:ifgsm", f"{_V}:ifgsm", callback=_ADV, use="callback",
          defaults={"method": "ifgsm", "eps": 0.03, "alpha": 0.01, "steps": 3}),
    Trick("pgd", "adversarial", "Projected gradient descent from a random start in the eps-ball (Linf or L2).",
          "Madry, Makelov, Schmidt, Tsipras, Vladu. Towards Deep Learning Models Resistant to "
          "Adversarial Attacks. ICLR 2018.",
          f"{_V}:pgd", f"{_V}:pgd", callback=_ADV, use="callback",
          defaults={"method": "pgd", "eps": 0.03, "alpha": 0.01, "steps": 3}),
    Trick("fgm", "adversarial", "Perturb the embedding weights along their normalised gradient (text models).",
          "Miyato, Dai, Goodfellow. Adversarial Training Methods for Semi-Supervised Text "
          "Classification. ICLR 2017.",
          f"{_V}:adversarial_loss", f"{_V}:FGM", callback="trickbag.train.callbacks:EmbeddingAdversarial",
          use="callback", defaults={"method": "fgm", "epsilon": 1.0}),
    Trick("pgd_embedding", "adversarial", "Several projected ascent steps on the embedding weights (text models).",
          "Madry et al. ICLR 2018; Zhu, Cheng, Gan, Sun, Goldstein, Liu. FreeLB: Enhanced "
          "Adversarial Training for Natural Language Understanding. ICLR 2020.",
          f"{_V}:adversarial_loss", f"{_V}:PGDEmbedding", callback="trickbag.train.callbacks:EmbeddingAdversarial",
          use="callback", defaults={"method": "pgd", "epsilon": 1.0, "alpha": 0.3, "steps": 3}),
    Trick("freelb", "adversarial", "K ascent steps on the embedding, every step's gradient accumulated (text models).",
          "Zhu, Cheng, Gan, Sun, Goldstein, Liu. FreeLB: Enhanced Adversarial Training for Natural "
          "Language Understanding. ICLR 2020.",
          f"{_V}:adversarial_loss", f"{_V}:train_on_embeddings", callback="trickbag.train.callbacks:EmbeddingAdversarial",
          use="callback", defaults={"method": "freelb", "epsilon": 1.0, "alpha": 0.5, "steps": 3}),
    Trick("pgd_training", "adversarial", "Madry's adversarial training: train on PGD-K attacks of every example.",
          "Madry, Makelov, Schmidt, Tsipras, Vladu. Towards Deep Learning Models Resistant to "
          "Adversarial Attacks. ICLR 2018.",
          f"{_V}:pgd", f"{_V}:make_attack", callback=_ADV, use="callback",
          defaults={"method": "pgd", "eps": 0.1, "alpha": 0.025, "steps": 7, "ratio": 1.0, "space": "data"}),
    Trick("fast_fgsm", "adversarial", "Fast adversarial training: FGSM from a random start, step 1.25 eps (~2x cost).",
          "Wong, Rice, Kolter. Fast is Better than Free: Revisiting Adversarial Training. ICLR 2020.",
          f"{_V}:fast_fgsm", f"{_V}:make_attack", callback=_ADV, use="callback",
          defaults={"method": "fast_fgsm", "eps": 0.1, "ratio": 1.0, "space": "data"}),
    Trick("robust_accuracy", "tool", "Accuracy under attack (PGD-20 by default) as val_robust_acc and test_robust_acc.",
          "Madry, Makelov, Schmidt, Tsipras, Vladu. Towards Deep Learning Models Resistant to "
          "Adversarial Attacks. ICLR 2018.",
          f"{_V}:robust_accuracy", f"{_V}:make_attack", callback=_CB + "RobustAccuracy", use="callback",
          defaults={"attack": "pgd", "eps": 0.1, "steps": 20}),
    Trick("catastrophic_overfitting", "loop", "Stop fast adversarial training when PGD accuracy collapses as FGSM's rises.",
          "Wong, Rice, Kolter. Fast is Better than Free: Revisiting Adversarial Training. ICLR 2020.",
          f"{_V}:detect_catastrophic_overfitting", _CB + "CatastrophicOverfittingGuard",
          callback=_CB + "CatastrophicOverfittingGuard", use="callback", defaults={"eps": 0.1}),
    # ---- tricks that live in the loop ------------------------------------------------------------
    Trick("ema", "loop", "Evaluate with an exponential moving average of the weights.",
          "Polyak, Juditsky. Acceleration of Stochastic Approximation by Averaging. SIAM J. "
          "Control Optim. 1992.",
          "trickbag.loop:ema_update_", _CB + "EMA", callback=_CB + "EMA", use="callback",
          defaults={"decay": 0.999}),
    Trick("swa", "loop", "Average the weights of the last epochs, then recompute BatchNorm statistics.",
          "Izmailov, Podoprikhin, Garipov, Vetrov, Wilson. Averaging Weights Leads to Wider Optima "
          "and Better Generalization. UAI 2018.",
          "trickbag.loop:average_weights_", "torch.optim.swa_utils:AveragedModel", callback=_CB + "SWA",
          use="callback", defaults={"start_epoch": 1}),
    Trick("snapshot_ensemble", "loop", "Cosine restarts; a snapshot per cycle; ensemble the snapshots.",
          "Huang, Li, Pleiss, Liu, Hopcroft, Weinberger. Snapshot Ensembles: Train 1, get M for "
          "Free. ICLR 2017.",
          "trickbag.loop:average_predictions", _CB + "SnapshotEnsemble", callback=_CB + "SnapshotEnsemble",
          use="callback", defaults={"cycles": 3}),
    Trick("early_stopping", "loop", "Stop when validation stops improving; restore the best weights.",
          "Prechelt. Early Stopping - But When? Neural Networks: Tricks of the Trade, 1998.",
          "trickbag.loop:improved", _CB + "EarlyStopping", callback=_CB + "EarlyStopping", use="callback",
          defaults={"monitor": "val_loss", "patience": 3}),
    Trick("nan_guard", "loop", "Stop on a non-finite loss or gradient before it spreads, with a diagnosis.",
          "Goodfellow, Bengio, Courville. Deep Learning, ch. 11 (Practical Methodology). MIT Press 2016.",
          "trickbag.loop:all_finite", _CB + "NaNGuard", callback=_CB + "NaNGuard", use="callback"),
    Trick("temperature_scaling", "loop", "Divide the logits by one temperature fitted on the validation split: calibration.",
          "Guo, Pleiss, Sun, Weinberger. On Calibration of Modern Neural Networks. ICML 2017.",
          "trickbag.calibration:fit_temperature", "trickbag.calibration:TemperatureScaled",
          callback=_CB + "TemperatureScaling", use="callback"),
    # ---- tools ---------------------------------------------------------------------------------
    Trick("monitor", "tool", "Per-layer activation, gradient and update statistics, with diagnoses.",
          "Karpathy. CS231n: Babysitting the Learning Process. Stanford 2016; Glorot, Bengio. AISTATS 2010.",
          "trickbag.monitor:diagnose", "trickbag.monitor:Monitor", callback="trickbag.monitor:Monitor",
          use="callback"),
    Trick("ensemble", "tool", "Average independently trained runs; measure accuracy, NLL and calibration (ECE).",
          "Lakshminarayanan, Pritzel, Blundell. Simple and Scalable Predictive Uncertainty Estimation using "
          "Deep Ensembles. NeurIPS 2017.",
          "trickbag.ensemble:combine_logits", "trickbag.ensemble:predict"),
    Trick("label_cleaning", "tool", "Flag suspect labels from k-fold predictions of several models (confident learning).",
          "Northcutt, Jiang, Chuang. Confident Learning: Estimating Uncertainty in Dataset Labels. JAIR 2021.",
          "trickbag.clean:find_label_issues", "trickbag.clean:run"),
    Trick("uncertainty_sampling", "tool", "Which unlabelled examples to label next: least confidence, margin, disagreement.",
          "Settles. Active Learning Literature Survey. University of Wisconsin-Madison TR 1648, 2009.",
          "trickbag.clean:rank_unlabeled", "trickbag.clean:rank"),
    Trick("lr_find", "tool", "The learning-rate range test: sweep the rate up, watch the loss, pick a range.",
          "Smith. Cyclical Learning Rates for Training Neural Networks. WACV 2017.",
          "trickbag.monitor:lr_find", "trickbag.monitor:plot_lr_find"),
)

_BUILTIN = {t.name: t for t in TRICKS}
if len(_BUILTIN) != len(TRICKS):  # pragma: no cover - a catalog typo
    raise RuntimeError("duplicate trick names in the catalog")
_REGISTERED: dict[str, Trick] = {}
#: Installed packages add tricks through this Python entry-point group: each entry point names a
#: ``Trick``, a list of them, or a function returning either.
ENTRY_POINT_GROUP = "trickbag.tricks"
_plugins_loaded = False
_REGISTRABLE_USES = ("callback", "model", "augment", None)


def register(trick: Trick, *, replace: bool = False) -> Trick:
    """Add a trick of your own to the catalog: ``trickbag list``, configs (``tricks: [name]``) and
    ablations then know it, and :func:`trickbag.testing.check_trick` runs the contracts that
    built-in tricks pass. Paths are resolved when the trick is used, so a registration imports
    nothing; they travel to ablation workers as text (the workers import the registering module
    again, or find the trick through the ``trickbag.tricks`` entry point).

    Args:
        trick: the entry; ``use`` must be ``"callback"`` (a :class:`~trickbag.train.callbacks.Callback`
            path), ``"model"`` (an ``apply(model, **params)`` path), ``"augment"`` (its wrapper, an
            augmentation module taking ``(x, generator=...)``) or None.
        replace: allow replacing an earlier registration of the same name (never a built-in).

    Example:
        >>> from trickbag import catalog
        >>> t = catalog.register(catalog.Trick("my_flood", "regularizer", "Flooding at 0.1.", "Me. My Paper. 2026.",
        ...                      "trickbag.losses:flood", "trickbag.losses:Flooding",
        ...                      callback="trickbag.train.callbacks:Flooding", use="callback", defaults={"b": 0.1}))
        >>> catalog.get("my_flood").defaults
        {'b': 0.1}
        >>> catalog.unregister("my_flood")
    """
    if not isinstance(trick, Trick):
        raise ValueError(f"register takes a trickbag.catalog.Trick, got {type(trick).__name__}")
    if not trick.name.isidentifier() or trick.name != trick.name.lower():
        raise ValueError(f"a trick name is snake_case (it is a config key), got {trick.name!r}")
    if trick.name in _BUILTIN:
        raise ValueError(f"{trick.name!r} is a built-in trick; register yours under another name")
    if trick.name in _REGISTERED and not replace:
        raise ValueError(f"a trick named {trick.name!r} is registered already (pass replace=True to replace it)")
    if trick.use not in _REGISTRABLE_USES:
        raise ValueError(
            f"trick {trick.name!r}: a registered trick enters a config as a callback, model surgery or "
            f"augmentation (use in {_REGISTRABLE_USES}); {trick.use!r} tricks are trickbag's own registries"
        )
    if trick.use == "callback" and not trick.callback:
        raise ValueError(f"trick {trick.name!r}: use='callback' needs callback='package.module:Class'")
    _REGISTERED[trick.name] = trick
    return trick


def unregister(name: str) -> None:
    """Remove a registered trick (built-ins stay)."""
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in trick and cannot be removed")
    _REGISTERED.pop(name, None)


def _load_plugins() -> None:
    """Register the tricks of installed packages' ``trickbag.tricks`` entry points, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    import warnings
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            obj = obj() if callable(obj) and not isinstance(obj, Trick) else obj
            for trick in obj if isinstance(obj, (list, tuple)) else [obj]:
                if trick.name not in _REGISTERED:
                    register(trick)
        except Exception as exc:  # a broken plugin must not break the catalog
            warnings.warn(f"trick plugin {ep.name!r} ({ep.value}) could not be loaded: {exc}", stacklevel=2)


def all_tricks() -> list[Trick]:
    """Built-in tricks, then registered ones (entry-point plugins included)."""
    _load_plugins()
    return [*TRICKS, *_REGISTERED.values()]


def names() -> list[str]:
    return sorted(t.name for t in all_tricks())


def get(name: str) -> Trick:
    """The entry called ``name``; an unknown name raises ``ValueError`` with the closest names."""
    if name in _BUILTIN:
        return _BUILTIN[name]
    _load_plugins()
    try:
        return _REGISTERED[name]
    except KeyError:
        raise unknown("trick", name, names()) from None


def by_kind(kind: str | None = None) -> list[Trick]:
    if kind is not None and kind not in KINDS:
        raise unknown("kind", kind, KINDS)
    return [t for t in all_tricks() if kind is None or t.kind == kind]
