"""``trickbag gan``: methods x seeds on a 2-D mixture or Fashion-MNIST, results and a report.

A config (YAML), every key checked::

    data: {name: ring, modes: 8, radius: 2.0, std: 0.02}     # ring | grid | fashion_mnist
    model: {name: mlp, hidden: 128, depth: 3, z_dim: 2}      # mlp | dcgan
    methods: [gan, wgan, wgan_gp]                            # or {wgan_gp: {lr: 2.0e-4}}
    seeds: 5
    train: {steps: 2000, batch_size: 256, eval_every: 250, log_every: 50, threads: 1, device: cpu}
    eval: {samples: 2500, sds: 3.0, min_share: 0.2}

Every (method, seed) run is saved to ``results.json`` as it finishes; running the same command
again skips finished runs, so a killed run continues.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from trickbag._atomic import check_writable, remove_orphans, save_torch, write_json, write_text
from trickbag._validate import changed_keys, check_positive, check_positive_int, check_range, unknown
from trickbag.gan.data import ImageSampler, Mixture, grid, ring, to_signed
from trickbag.gan.metrics import FeatureFrechet, mode_coverage
from trickbag.gan.nets import DCGANCritic, DCGANGenerator, MLPCritic, MLPGenerator
from trickbag.gan.train import METHODS, GanMethod, method, train_gan

__all__ = ["GanConfig", "load_gan_config", "run", "file_label", "DATA", "MODELS"]

DATA = ("ring", "grid", "fashion_mnist")
MODELS = ("mlp", "dcgan")
_DATA_KEYS = {"ring": {"modes", "radius", "std"}, "grid": {"side", "spacing", "std"},
              "fashion_mnist": {"root", "subset"}}
_MODEL_KEYS = {"mlp": {"hidden", "depth", "z_dim"}, "dcgan": {"width", "z_dim"}}


@dataclass
class TrainSection:
    steps: int = 2000
    batch_size: int = 256
    eval_every: int = 250
    log_every: int = 50
    threads: int | None = None
    device: str = "cpu"


@dataclass
class EvalSection:
    samples: int = 2500  # generated samples per evaluation
    sds: float = 3.0  # mixtures: a high-quality sample lies within sds standard deviations of a mode
    min_share: float = 0.2  # mixtures: a mode is covered with this share of its fair share of samples
    reach_sds: float = 10.0  # mixtures: the looser radius of modes_reached
    real_samples: int = 5000  # images: real test images for the reference statistics
    classifier_epochs: int = 2  # images: training of our feature extractor (the small CNN)
    classifier_width: int = 32
    classifier_subset: int | None = None  # images: train the classifier on this many images (tests)


@dataclass
class GanConfig:
    """A ``trickbag gan`` config (see the module docstring)."""

    data: dict[str, Any] = field(default_factory=lambda: {"name": "ring"})
    model: dict[str, Any] = field(default_factory=lambda: {"name": "mlp"})
    methods: list[Any] = field(default_factory=lambda: ["gan", "wgan", "wgan_gp"])
    seeds: int = 5
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
    source: str | None = None

    def recipes(self) -> list[tuple[str, GanMethod]]:
        """``(label, recipe)`` per entry of ``methods``: the label is the name, with the changed
        settings when there are any (``wgan_gp:lr=0.001``)."""
        out = []
        for spec in self.methods:
            if isinstance(spec, str):
                out.append((spec, method(spec)))
            elif isinstance(spec, dict) and len(spec) == 1:
                name, changes = next(iter(spec.items()))
                changes = changes or {}
                if not isinstance(changes, dict):
                    raise ValueError(f"method {name!r}: its settings are a mapping such as {{lr: 1.0e-4}}, got {changes!r}")
                label = name + (":" + ",".join(f"{k}={_short(v)}" for k, v in changes.items()) if changes else "")
                out.append((label, method(name, **changes)))
            else:
                raise ValueError(f"a method is a name ({', '.join(METHODS)}) or {{name: {{settings}}}}, got {spec!r}")
        labels = [label for label, _ in out]
        if len(set(labels)) != len(labels):
            raise ValueError(f"methods must differ; got {labels}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"data": dict(self.data), "model": dict(self.model), "methods": copy.deepcopy(self.methods),
                "seeds": self.seeds, "train": asdict(self.train), "eval": asdict(self.eval)}


def _short(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "/".join(_short(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def _section(cls, values: Any, where: str):
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise ValueError(f"gan config section {where!r} must be a mapping, got {values!r}")
    names = set(cls.__dataclass_fields__)
    for key in values:
        if key not in names:
            raise unknown(f"key in {where}", key, names)
    return cls(**values)


def _named(values: Any, where: str, valid: tuple[str, ...], keys: dict[str, set[str]]) -> dict[str, Any]:
    if values is not None and not isinstance(values, (str, dict)):
        raise ValueError(f"gan config section {where!r} is a name or a mapping such as {{name: {valid[0]}}}, got {values!r}")
    values = {"name": values} if isinstance(values, str) else dict(values or {})
    name = values.get("name")
    if name not in valid:
        raise unknown(f"{where} name", name, valid)
    for key in values:
        if key != "name" and key not in keys[name]:
            raise unknown(f"key in {where} ({name})", key, keys[name])
    return values


def _set(raw: dict[str, Any], item: str) -> None:
    from trickbag.train.config import yaml_load

    key, eq, value = item.partition("=")
    if not eq or not key:
        raise ValueError(f"override {item!r} is not key=value (e.g. train.steps=500)")
    node = raw
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ValueError(f"override {item!r}: {p!r} is not a section")
    node[parts[-1]] = yaml_load(value)


def load_gan_config(source: str | Path | dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> GanConfig:
    """Read a ``trickbag gan`` YAML config (or dict), apply ``key=value`` overrides, check every key.

    Example:
        >>> load_gan_config({"data": "grid", "seeds": 2}, ["train.steps=100"]).train.steps
        100
    """
    from trickbag.train.config import yaml_load

    origin = None
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"config file not found: {path}")
        raw, origin = yaml_load(path.read_text(encoding="utf-8")) or {}, str(path)
    if not isinstance(raw, dict):
        raise ValueError(f"a gan config is a mapping, got {type(raw).__name__}")
    for item in overrides:
        _set(raw, item)
    sections = {"data", "model", "methods", "seeds", "train", "eval"}
    for key in raw:
        if key not in sections:
            raise unknown("gan config section", key, sections)
    methods = raw.get("methods", ["gan", "wgan", "wgan_gp"])
    if not isinstance(methods, list) or not methods:
        raise ValueError(f"methods must be a non-empty list, got {methods!r}")
    cfg = GanConfig(
        data=_named(raw.get("data", "ring"), "data", DATA, _DATA_KEYS),
        model=_named(raw.get("model", "mlp"), "model", MODELS, _MODEL_KEYS),
        methods=methods,
        seeds=check_positive_int("seeds", raw.get("seeds", 5)),
        train=_section(TrainSection, raw.get("train"), "train"),
        eval=_section(EvalSection, raw.get("eval"), "eval"),
        source=origin,
    )
    cfg.recipes()  # unknown methods and settings fail here
    _check_sections(cfg)
    if cfg.data["name"] == "fashion_mnist" and cfg.model["name"] == "mlp" and "z_dim" not in cfg.model:
        cfg.model["z_dim"] = 64
    return cfg


def _check_sections(cfg: GanConfig) -> None:
    """Every value of ``train`` and ``eval`` in its valid range, before anything runs."""
    t, e = cfg.train, cfg.eval
    for name in ("steps", "batch_size", "eval_every", "log_every"):
        check_positive_int(f"train.{name}", getattr(t, name))
    if t.threads is not None:
        check_positive_int("train.threads", t.threads)
    from trickbag.train.config import _device

    valid = _device(t.device)
    if valid is not None:
        raise ValueError(f"train.device must be {valid}, got {t.device!r}")
    for name in ("samples", "real_samples", "classifier_epochs", "classifier_width"):
        check_positive_int(f"eval.{name}", getattr(e, name))
    if e.classifier_subset is not None:
        check_positive_int("eval.classifier_subset", e.classifier_subset)
    check_positive("eval.sds", e.sds)
    check_positive("eval.reach_sds", e.reach_sds)
    check_range("eval.min_share", e.min_share, 0.0, 1.0)


def file_label(label: str) -> str:
    """A method label as a file-name part: ``wgan_gp:lr=0.001`` -> ``wgan_gp-lr0.001``."""
    return label.replace(":", "-").replace("=", "").replace(",", "-").replace("/", "_")


# ---- the pieces a config names ----------------------------------------------------------------

def _mixture(data: dict[str, Any]) -> Mixture:
    opts = {k: v for k, v in data.items() if k != "name"}
    return ring(**opts) if data["name"] == "ring" else grid(**opts)


def _nets(cfg: GanConfig, shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    spec = {k: v for k, v in cfg.model.items() if k != "name"}
    if cfg.model["name"] == "dcgan":
        if shape != (1, 28, 28):
            raise ValueError(f"model dcgan makes 1x28x28 images; data {cfg.data['name']!r} has shape {shape}")
        z_dim = spec.get("z_dim", 64)
        return DCGANGenerator(z_dim, width=spec.get("width", 32)), DCGANCritic(width=spec.get("width", 32))
    z_dim = spec.get("z_dim", 2)
    hidden, depth = spec.get("hidden", 128), spec.get("depth", 3)
    g = MLPGenerator(z_dim, shape, hidden=hidden, depth=depth, out_tanh=len(shape) == 3)
    return g, MLPCritic(shape, hidden=hidden, depth=depth)


def _classifier(cfg: GanConfig, splits, out: Path) -> tuple[nn.Module, dict[str, Any]]:
    """Our feature extractor: trickbag's small CNN trained on the Fashion-MNIST training split
    (cached in the output folder). Returns the module mapping [-1, 1] images to its pooled
    penultimate features, and its test accuracy."""
    from trickbag.augment import fit_normalizer
    from trickbag.data import DeviceLoader
    from trickbag.models import small_cnn
    from trickbag.train import Trainer

    torch.manual_seed(0)
    net = small_cnn(1, 10, width=cfg.eval.classifier_width)
    from trickbag.data import subset

    train = subset(splits.train, cfg.eval.classifier_subset) if cfg.eval.classifier_subset else splits.train
    norm = fit_normalizer(train.inputs)
    path = out / "classifier.pt"
    if path.exists():
        from trickbag.train.checkpoint import UnsafeFileError, load_checkpoint

        try:
            saved = load_checkpoint(path)  # tensors and plain containers only: a pickle never runs
            net.load_state_dict(saved["model"])
            info = dict(saved["info"])
        except UnsafeFileError:
            raise
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            reason = str(exc).splitlines()[0] if isinstance(exc, ValueError) else f"not a classifier of this config ({exc})"
            raise ValueError(f"{reason.rstrip('.')}; delete {path} to train the feature classifier again") from None
    else:
        trainer = Trainer(net, DeviceLoader(train, 128, normalize=norm, seed=0),
                          optimizer={"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
                          epochs=cfg.eval.classifier_epochs, device=cfg.train.device, progress=False, seed=0)
        trainer.fit()
        test = trainer.evaluate(DeviceLoader(splits.test, 1000, shuffle=False, normalize=norm), prefix="test")
        info = {"test_acc": test["test_acc"], "epochs": cfg.eval.classifier_epochs, "width": cfg.eval.classifier_width,
                "features": 2 * cfg.eval.classifier_width, "train_images": len(train)}
        save_torch({"model": net.state_dict(), "info": info}, path)

    class Features(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = net[:-2]  # up to the pooled, flattened features (before dropout and the head)
            self.norm = norm

        def forward(self, x):
            return self.body(self.norm((x + 1) / 2))

    return Features().eval(), info


# ---- the run ------------------------------------------------------------------------------------

def _saved_results(path: Path, cfg: GanConfig) -> dict[str, Any]:
    """The results a folder holds for ``cfg`` (``{}`` for none); another config's are refused,
    naming the keys that differ."""
    if not path.exists():
        return {}
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise ValueError(f"a mapping, got {type(saved).__name__}")
    except ValueError as exc:
        raise ValueError(f"{path} is damaged ({exc}); move it away to start again") from None
    if saved.get("config") is not None:
        # Saved by an older trickbag, a config lacks the keys added since: read it as today's
        # code would (their defaults) before comparing, so that resuming still works.
        diff = changed_keys(load_gan_config(saved["config"]).to_dict(), cfg.to_dict())
        if diff:
            raise ValueError(f"{path.parent} holds results of another config ({'; '.join(diff)}); "
                             "use a new --out, or the same config to continue")
        saved["config"] = cfg.to_dict()
    return saved


def run(config: str | Path | dict[str, Any] | GanConfig, *, out: str | Path = "runs/gan",
        overrides: list[str] | tuple[str, ...] = (), progress: bool = True) -> dict[str, Any]:
    """Train every method with every seed, evaluate, save ``results.json``, sample PNGs and a
    report (``report.md``, ``report.html``) in ``out``; returns the summary."""
    from trickbag._provenance import provenance
    from trickbag.gan.report import render, sample_png

    from trickbag.train._runtime import _resolve_device

    cfg = config if isinstance(config, GanConfig) else load_gan_config(config, overrides)
    if isinstance(config, GanConfig):
        _check_sections(cfg)
    out = Path(out)
    device = _resolve_device(cfg.train.device)  # 'cuda' without a GPU fails here, before any write
    images = cfg.data["name"] == "fashion_mnist"
    if not images:
        mixture = _mixture(cfg.data)  # its options are checked here
    _nets(cfg, (1, 28, 28) if images else (2,))  # and the model's
    results_path = out / "results.json"
    saved = _saved_results(results_path, cfg)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    remove_orphans(out)  # temporary files of writes a kill interrupted
    check_writable(out)  # a read-only or full folder fails before any training
    write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    results: dict[str, Any] = {"config": cfg.to_dict(), "provenance": provenance(), "runs": saved.get("runs", {}),
                               "classifier": saved.get("classifier")}
    if images:
        from trickbag.data import fashion_mnist, subset

        splits = fashion_mnist(cfg.data.get("root"))
        train_images = splits.train if not cfg.data.get("subset") else subset(splits.train, cfg.data["subset"])
        sampler, shape = ImageSampler(train_images.inputs), (1, 28, 28)
        features, results["classifier"] = _classifier(cfg, splits, out)
        real_test = to_signed(splits.test.inputs[: cfg.eval.real_samples])
        frechet = FeatureFrechet(features.to(device), real_test.to(device))
        # the floor: real training images scored exactly as generated ones are (same count)
        results["classifier"]["fd_real_floor"] = frechet(to_signed(splits.train.inputs[: cfg.eval.samples]).to(device))
    else:
        sampler, shape = mixture, (2,)

    def evaluate_fn(seed: int):
        def evaluate(generator: nn.Module, step: int) -> dict[str, float]:
            gen = torch.Generator().manual_seed(10_000 + seed)
            z = torch.randn(cfg.eval.samples, generator.z_dim, generator=gen).to(device)
            with torch.no_grad():
                samples = torch.cat([generator(z[i:i + 500]) for i in range(0, z.shape[0], 500)])
            if images:
                return {"fd_ours": frechet(samples)}
            c = mode_coverage(samples, mixture, sds=cfg.eval.sds, min_share=cfg.eval.min_share,
                              reach_sds=cfg.eval.reach_sds)
            return {"modes_covered": c.modes_covered, "high_quality": c.high_quality, "modes_reached": c.modes_reached,
                    "median_sd": c.median_sd}
        return evaluate

    for label, recipe in cfg.recipes():
        for seed in range(cfg.seeds):
            key = f"{label}@{seed}"
            if key in results["runs"]:
                continue
            torch.manual_seed(seed)
            generator, critic = _nets(cfg, shape)
            wall, cpu = time.perf_counter(), time.process_time()
            history = train_gan(generator, critic, sampler.sample, recipe=recipe, steps=cfg.train.steps,
                                batch_size=cfg.train.batch_size, seed=seed, eval_every=cfg.train.eval_every,
                                evaluate=evaluate_fn(seed), log_every=cfg.train.log_every, device=device)
            final = {k: v for k, v in history[-1].items() if k != "step"}
            results["runs"][key] = {"method": label, "recipe": asdict(recipe), "seed": seed, "history": history,
                                    "final": final, "wall_time": time.perf_counter() - wall,
                                    "cpu_time": time.process_time() - cpu}
            sample_png(generator, cfg, out / f"samples_{file_label(label)}_seed{seed}.png",
                       mixture=None if images else mixture, device=device)
            write_json(results_path, results)
            if progress:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in final.items() if k in
                                  ("modes_covered", "high_quality", "fd_ours", "w_estimate"))
                print(f"{key}: {shown} ({results['runs'][key]['wall_time']:.0f}s)", flush=True)
    write_json(results_path, results)
    return render(out)
