"""`trickbag multitask`: single-task vs hard vs soft sharing on a config's data, over training
set sizes and seeds, with paired statistics per task."""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trickbag._atomic import check_writable, remove_orphans, write_json
from trickbag._provenance import provenance
from trickbag._validate import changed_keys, check_positive_int, check_real
from trickbag.losses import MultiTaskLoss
from trickbag.multitask.data import FASHION_MNIST_COARSE, TaskBatches, label_map
from trickbag.multitask.model import MultiTask, SoftSharing, split_head

__all__ = ["ARMS", "run", "parse_task", "NAMED_MAPS"]

ARMS = ("single-task", "hard sharing", "hard, uncertainty weights", "soft sharing")
NAMED_MAPS = {"fashion_mnist_coarse": FASHION_MNIST_COARSE["map"]}


def parse_task(spec: str) -> tuple[str, list[int]]:
    """``"coarse=0,1,0,0,0,2,0,2,3,2"`` or ``"coarse=fashion_mnist_coarse"``: a task whose
    label is a map of the data set's class.

    Example:
        >>> parse_task("coarse=fashion_mnist_coarse")
        ('coarse', [0, 1, 0, 0, 0, 2, 0, 2, 3, 2])
    """
    name, eq, value = spec.partition("=")
    if not eq or not name:
        raise ValueError(f"a task is NAME=MAP (a comma-separated class map, or one of {sorted(NAMED_MAPS)}), got {spec!r}")
    if value in NAMED_MAPS:
        return name, list(NAMED_MAPS[value])
    try:
        return name, [int(v) for v in value.split(",")]
    except ValueError:
        raise ValueError(f"task {name!r}: {value!r} is neither a comma-separated class map nor one of "
                         f"{sorted(NAMED_MAPS)}") from None


def _trainer(cfg, splits, model: nn.Module, loss: nn.Module, tasks: dict[str, Any], seed: int, callbacks=()):
    from trickbag.augment import build_augment, fit_normalizer
    from trickbag.data import DeviceLoader
    from trickbag.train import Trainer
    from trickbag.train.build import build_schedule, optimizer_factory

    image = splits.train.kind == "image"
    norm = fit_normalizer(splits.train.inputs) if image and not splits.train.inputs.is_floating_point() else None
    augment = build_augment(cfg.data.augment) if cfg.data.augment else None
    bs = min(cfg.data.batch_size, len(splits.train))
    train = TaskBatches(DeviceLoader(splits.train, bs, normalize=norm, augment=augment, seed=seed), tasks)
    evals = {k: TaskBatches(DeviceLoader(getattr(splits, k), cfg.data.eval_batch_size, shuffle=False, normalize=norm),
                            tasks) for k in ("val", "test") if getattr(splits, k) is not None}
    spe = len(train)
    total = cfg.train.steps if cfg.train.steps else cfg.train.epochs * spe
    # No per-epoch validation: with small training sets an epoch is a step or two, and only the
    # test split is reported.
    trainer = Trainer(model, train, val_data=None, loss=loss, optimizer=optimizer_factory(cfg.optimizer),
                      schedule=build_schedule(cfg.schedule, spe, total), callbacks=list(callbacks),
                      epochs=None if cfg.train.steps else cfg.train.epochs, steps=cfg.train.steps, device="cpu",
                      seed=seed, progress=False)
    return trainer, evals.get("test")


def _arm_models(arm: str, base: nn.Module, classes: dict[str, int], coefficient: float):
    """(list of (model, its tasks, loss, callbacks)) for one arm, from one initial network."""
    from trickbag.train.callbacks import SoftSharingPenalty

    trunk, features = split_head(base)
    heads = {t: nn.Linear(features, c) for t, c in classes.items()}
    if arm == "single-task":
        return [(MultiTask(copy.deepcopy(trunk), {t: copy.deepcopy(heads[t])}), [t], MultiTaskLoss([t]), [])
                for t in classes]
    if arm == "hard sharing":
        return [(MultiTask(trunk, heads), list(classes), MultiTaskLoss(list(classes)), [])]
    if arm == "hard, uncertainty weights":
        loss = MultiTaskLoss(list(classes), weighting="uncertainty")
        return [(MultiTask(trunk, heads, loss=loss), list(classes), loss, [])]
    if arm == "soft sharing":
        models = {t: nn.Sequential(copy.deepcopy(trunk), heads[t]) for t in classes}
        return [(SoftSharing(models, coefficient=coefficient), list(classes), MultiTaskLoss(list(classes)),
                 [SoftSharingPenalty()])]
    raise ValueError(f"unknown arm {arm!r}; valid: {ARMS}")


def _sparse(data, mapping_fns: dict[str, Any], main_task: str, keep: int | None, seed: int):
    """Targets as columns (main task first, then each mapped task); with ``keep``, the main
    task's label survives on only ``keep`` random examples (-100 elsewhere)."""
    from trickbag.data import ArrayDataset

    cols = [data.targets.clone()]
    for fn in mapping_fns.values():
        cols.append(fn(data.targets))
    if keep is not None and keep < len(data):
        gen = torch.Generator().manual_seed(seed)
        hidden = torch.randperm(len(data), generator=gen)[keep:]
        cols[0][hidden] = -100
    return ArrayDataset(data.inputs, torch.stack(cols, 1), list(data.classes))


def _saved_results(store: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """The trials saved in ``store`` (none when it does not exist); those of another config,
    tasks or settings are refused, naming the keys that differ."""
    if not store.exists():
        return {"trials": {}}
    try:
        saved = json.loads(store.read_text(encoding="utf-8"))
        if not isinstance(saved, dict) or not isinstance(saved.get("trials"), dict):
            raise ValueError("no trials in it")
    except ValueError as exc:
        raise ValueError(f"{store} is damaged ({exc}); move it away to start again") from None
    old = {k: saved.get(k) for k in identity}
    if isinstance(old["config"], dict):  # saved by an older trickbag: with today's defaults for keys added since
        from trickbag.train.config import load_config

        try:
            old["config"] = load_config(old["config"]).to_dict()
        except ValueError:
            pass  # a config today's code refuses differs anyway; changed_keys names where
    diff = changed_keys(old, identity)
    if diff:
        raise ValueError(f"{store.parent} holds results of another config ({'; '.join(diff)}); "
                         "use a new --out, or the same config to continue")
    return saved


def run(config: Any, tasks: Mapping[str, Sequence[int]], *, main_task: str = "fine", subsets: Sequence[int] = (500, 5000),
        seeds: int = 3, arms: Sequence[str] = ARMS, soft_coefficient: float = 0.02, out: str | Path = "runs/multitask",
        overrides: Sequence[str] = (), main_labels: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Train every arm (single-task models, hard sharing with fixed and with uncertainty
    weights, soft sharing) on ``subsets`` training-set sizes x ``seeds``; the config's labels
    are task ``main_task`` and ``tasks`` adds labels mapped from them. Seed ``i`` gives every
    arm the same initial trunk and data order. Test accuracy per task; writes
    ``multitask.json``, ``report.md`` and ``accuracy.png`` to ``out``; reruns skip what is done.
    With ``main_labels``, only that many training examples keep their ``main_task`` label (the
    mapped tasks keep theirs): scarce fine labels beside plentiful coarse ones."""
    from trickbag.data import subset as take_subset
    from trickbag.train.build import build_model, load_splits
    from trickbag.train.config import load_config
    from trickbag.train.trainer import seed_everything

    for arm in arms:
        if arm not in ARMS:
            raise ValueError(f"unknown arm {arm!r}; valid: {ARMS}")
    subsets = list(subsets)
    if not subsets:
        raise ValueError("subsets must name at least one training-set size, e.g. 500,5000")
    for n in subsets:
        check_positive_int("a training-set size in subsets", n)
    check_positive_int("seeds", seeds)
    if main_labels is not None:
        check_positive_int("main_labels", main_labels)
    check_real("soft_coefficient", soft_coefficient)
    if soft_coefficient < 0:
        raise ValueError(f"soft_coefficient must be >= 0, got {soft_coefficient!r}")
    cfg = load_config(config, list(overrides))
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    full = load_splits(cfg)
    fine_classes = full.num_classes
    too_big = [n for n in subsets if n > len(full.train)]
    if too_big:
        raise ValueError(f"subsets {too_big} exceed the {len(full.train)} training examples of data "
                         f"{cfg.data.name!r}; valid sizes are 1 to {len(full.train)}")
    for name, mapping in tasks.items():
        if len(mapping) != fine_classes:
            raise ValueError(f"task {name!r} maps {len(mapping)} classes, but the data has {fine_classes}")
    mapped = {n: label_map(m) for n, m in tasks.items()}
    task_fns: dict[str, Any] = {t: i for i, t in enumerate([main_task, *tasks])}  # target columns
    classes = {main_task: fine_classes, **{n: max(m) + 1 for n, m in tasks.items()}}
    out = Path(out)
    store = out / "multitask.json"
    # What the trials' numbers depend on; sizes, seeds and arms may grow between reruns.
    identity = {"config": cfg.to_dict(), "tasks": {n: list(m) for n, m in tasks.items()}, "main_task": main_task,
                "main_labels": main_labels, "soft_coefficient": soft_coefficient}
    results = _saved_results(store, identity)
    remove_orphans(out)  # temporary files of writes a kill interrupted
    check_writable(out)  # a read-only or full folder fails before any training
    results.update({**identity, "subsets": subsets, "seeds": seeds, "arms": list(arms), "provenance": provenance()})
    for n in subsets:
        splits = copy.copy(full)
        splits.train = _sparse(take_subset(full.train, n, seed=cfg.data.split_seed), mapped, main_task, main_labels,
                               cfg.data.split_seed)
        splits.test = _sparse(full.test, mapped, main_task, None, 0)
        splits.val = None
        for i in range(seeds):
            seed = cfg.train.seed + i
            for arm in arms:
                key = f"{n}|{seed}|{arm}"
                if key in results["trials"]:
                    continue
                seed_everything(seed)
                base = build_model(cfg, splits)
                cpu0, t0 = time.process_time(), time.perf_counter()
                accs: dict[str, float] = {}
                for model, its_tasks, loss, cbs in _arm_models(arm, base, classes, soft_coefficient):
                    trainer, test = _trainer(cfg, splits, model, loss, {t: task_fns[t] for t in its_tasks}, seed, cbs)
                    trainer.fit()
                    metrics = trainer.evaluate(test, prefix="test")
                    accs.update({t: metrics[f"test_{t}_acc"] for t in its_tasks})
                results["trials"][key] = {"n": n, "seed": seed, "arm": arm, "acc": accs,
                                          "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0,
                                          "load": os.getloadavg()[0]}
                if progress:
                    print(f"n={n:<6} seed {seed} {arm:<26} " + "  ".join(f"{t} {a:.4f}" for t, a in accs.items())
                          + f"  ({time.perf_counter() - t0:.0f}s)", flush=True)
                write_json(store, results)  # atomically: a kill or a full disk keeps the trials saved so far
    from trickbag.multitask.report import render

    results["report"] = [str(p) for p in render(out)]
    return results
