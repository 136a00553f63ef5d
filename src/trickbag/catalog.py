"""The trick catalog: one entry per trick, with its functions, wrapper, paper and method card.

Entries name their code by dotted path (``"trickbag.losses:focal_loss"``) and resolve it on
first use, so reading the catalog (``trickbag list``) imports nothing heavy, and no trick
module depends on this one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trickbag._validate import unknown

__all__ = ["KINDS", "USES", "Trick", "TRICKS", "get", "names", "by_kind", "card_path", "resolve"]

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
USES = ("callback", "optimizer", "schedule", "model", "loss", None)

CARDS_DIR = Path(__file__).resolve().parents[2] / "docs" / "tricks"


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

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"trick {self.name!r}: unknown kind {self.kind!r}; valid: {KINDS}")
        if self.use not in USES:
            raise ValueError(f"trick {self.name!r}: unknown use {self.use!r}; valid: {USES}")

    @property
    def card(self) -> Path:
        return card_path(self.name)

    def load_function(self) -> Any:
        return resolve(self.function)

    def load_wrapper(self) -> Any:
        return resolve(self.wrapper)

    def load_callback(self) -> Any:
        return resolve(self.callback) if self.callback else None


def card_path(name: str) -> Path:
    return CARDS_DIR / f"{name}.md"


_L = "trickbag.losses"
_S = "trickbag.schedules"
_O = "trickbag.optim"
_SCHED = f"{_S}:to_lr_scheduler"

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
    Trick("weight_clipping", "regularizer", "Clamp every parameter to [-c, c] (the original WGAN's Lipschitz constraint).",
          "Arjovsky, Chintala, Bottou. Wasserstein Generative Adversarial Networks. ICML 2017.",
          f"{_L}:clip_weights_", f"{_L}:clip_weights_"),
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
          f"{_S}:multistep", _SCHED, use="schedule"),
    Trick("exponential", "schedule", "Decay the learning rate by gamma every step.",
          "Bengio. Practical Recommendations for Gradient-Based Training of Deep Architectures. 2012.",
          f"{_S}:exponential", _SCHED, use="schedule"),
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
          defaults={"cycle_epochs": 2, "warmup_steps": 10, "gamma": 0.5}),
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
)

_BY_NAME = {t.name: t for t in TRICKS}
if len(_BY_NAME) != len(TRICKS):  # pragma: no cover - a catalog typo
    raise RuntimeError("duplicate trick names in the catalog")


def names() -> list[str]:
    return sorted(_BY_NAME)


def get(name: str) -> Trick:
    """The entry called ``name``; an unknown name raises ``ValueError`` with the closest names."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise unknown("trick", name, _BY_NAME) from None


def by_kind(kind: str | None = None) -> list[Trick]:
    if kind is not None and kind not in KINDS:
        raise unknown("kind", kind, KINDS)
    return [t for t in TRICKS if kind is None or t.kind == kind]
