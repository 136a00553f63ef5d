"""`trickbag clean`: out-of-sample probabilities from several model types (k-fold), combined;
confident learning and an agreement rule flag suspect labels; a CSV, an image grid and a
cleaned data-set view; and `--rank-unlabeled`: which examples to label next."""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from trickbag._atomic import check_writable, save_figure, save_torch, tidy_folder, write_json, write_text
from trickbag._optional import available
from trickbag._provenance import provenance
from trickbag._validate import changed_keys, check_choice, check_positive_int
from trickbag.clean.scores import (
    FILTERS,
    RANKINGS,
    agreement_issues,
    find_label_issues,
    label_quality,
    rank_unlabeled,
)

__all__ = ["RULES", "run", "rank", "kfold", "out_of_sample_probs", "parse_models", "precision_recall"]

RULES = ("confident", "agreement", "either", "both")


def parse_models(spec: str | Sequence[str]) -> list[dict[str, Any]]:
    """Model types: ``"small_cnn:width=16,mlp,resnet_cifar:depth=8,width=8"`` (a ``key=value``
    without a name continues the previous model) or a list of such strings.

    Example:
        >>> parse_models("small_cnn:width=16,mlp,resnet_cifar:depth=8,width=8")
        [{'name': 'small_cnn', 'width': 16}, {'name': 'mlp'}, {'name': 'resnet_cifar', 'depth': 8, 'width': 8}]
    """
    from trickbag.ablation.arms import parse_trick

    items: list[str] = []
    for token in [t.strip() for t in (spec.split(",") if isinstance(spec, str) else spec) if t.strip()]:
        if "=" in token and ":" not in token and items:
            items[-1] += "," + token
        else:
            items.append(token)
    if not items:
        raise ValueError("give at least one model type (--models small_cnn,mlp)")
    return [{"name": t.name, **t.params} for t in map(parse_trick, items)]


def _label(model: dict[str, Any]) -> str:
    return model["name"] + "".join(f"-{k}{v}" for k, v in model.items() if k != "name")


def kfold(targets: Tensor, folds: int, *, seed: int = 0) -> Tensor:
    """A stratified fold id in ``0..folds-1`` per example (each class spread evenly).

    Example:
        >>> torch.bincount(kfold(torch.arange(12) % 2, 3)).tolist()
        [4, 4, 4]
    """
    check_positive_int("folds", folds, minimum=2)
    gen = torch.Generator().manual_seed(seed)
    fold = torch.empty(targets.shape[0], dtype=torch.long)
    offset = 0
    for c in torch.unique(targets):
        idx = torch.nonzero(targets == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        fold[idx] = (torch.arange(idx.numel()) + offset) % folds
        offset += idx.numel()
    return fold


def _fit_and_predict(cfg, train, pool) -> Tensor:
    """Train ``cfg`` on ``train``; softmax probabilities on ``pool`` (inputs normalised as in training)."""
    from trickbag.data import DeviceLoader, Splits
    from trickbag.train.build import build_run

    splits = Splits(train, None, None, name="clean")
    run = build_run(cfg, splits=splits)
    run.fit()
    loader = DeviceLoader(pool, cfg.data.eval_batch_size, shuffle=False, normalize=run.trainer.train_data.normalize,
                          device=run.trainer.device)
    return run.trainer.predict(loader).double().softmax(1)


def out_of_sample_probs(cfg, data, folds: int, *, seed: int = 0, progress: bool = True) -> Tensor:
    """``(N, C)`` probabilities where each example's row comes from a model trained on the
    other folds (k-fold cross-validation), so no model saw the example it scores."""
    fold = kfold(data.targets, folds, seed=seed)
    probs = torch.zeros(len(data), len(data.classes) or int(data.targets.max()) + 1, dtype=torch.float64)
    for f in range(folds):
        t0 = time.perf_counter()
        held = fold == f
        probs[held] = _fit_and_predict(cfg, data.take(torch.nonzero(~held).flatten()), data.take(torch.nonzero(held).flatten()))
        if progress:
            print(f"  {cfg.model['name']}: fold {f + 1}/{folds} ({time.perf_counter() - t0:.0f}s)", flush=True)
    return probs


def precision_recall(flags: Tensor, truth: Tensor) -> dict[str, float]:
    """Precision and recall of flagged examples against the truly mislabelled ones.

    Example:
        >>> precision_recall(torch.tensor([True, True, False, False]), torch.tensor([True, False, True, False]))
        {'flagged': 2, 'precision': 0.5, 'recall': 0.5, 'f1': 0.5}
    """
    tp = int((flags & truth).sum())
    flagged, actual = int(flags.sum()), int(truth.sum())
    p = tp / flagged if flagged else float("nan")
    r = tp / actual if actual else float("nan")
    f1 = 2 * p * r / (p + r) if flagged and actual and p + r > 0 else float("nan")
    return {"flagged": flagged, "precision": p, "recall": r, "f1": f1}


def _image_grid(images: Tensor, titles: list[str], path: Path, cols: int = 8) -> Path:
    from trickbag.report.plots import pyplot

    plt = pyplot()
    n = max(1, images.shape[0])
    rows = -(-n // cols)
    titles = ["\n".join(textwrap.fill(part, 24) for part in t.split("\n")) for t in titles]  # long names wrap, uncut
    lines = max([t.count("\n") + 1 for t in titles] or [2])
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, (1.5 + 0.17 * lines) * rows), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles):
        x = img.float()
        x = (x - x.min()) / (x.max() - x.min() + 1e-8)
        if x.shape[0] == 1:
            ax.imshow(x[0].numpy(), cmap="gray")
        else:
            ax.imshow(x.permute(1, 2, 0).numpy())
        ax.set_title(title, fontsize=6.5)
        ax.set_anchor("S")  # the square image sits at the bottom of its cell, its title in the room above
    fig.tight_layout()
    save_figure(fig, path)  # atomically, as every file of the folder
    plt.close(fig)
    return path


def _write_csv(path: Path, header: list[str], rows: Sequence[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    w = csv.writer(buffer)
    w.writerow(header)
    w.writerows(rows)
    write_text(path, buffer.getvalue())


def _open_out(out: str | Path) -> Path:
    """The output folder, checked before any training: orphan temporary files of killed writes
    removed, and a read-only or full folder refused in one sentence."""
    out = Path(out)
    tidy_folder(out)
    return check_writable(out)


def _claim_caches(out: Path, cfg, folds: int) -> None:
    """The cached out-of-sample probabilities (``probs-*.pt``) belong to the config and folds
    that computed them, recorded in ``probs.json``: a rerun with another config (another
    ``optimizer.lr``, ``data.subset`` ...) is refused, naming the keys that differ; caches
    without a record (an older trickbag) are recomputed."""
    record = out / "probs.json"
    raw = cfg.to_dict()
    raw.pop("model", None)  # each cache is one model type's: its name is in the file name
    key = json.loads(json.dumps({"config": raw, "folds": folds}, default=str))
    caches = sorted(out.glob("probs-*.pt"))
    if caches:
        try:
            old = json.loads(record.read_text())
        except (OSError, ValueError):
            old = None
        if old is None:
            print(f"warning: {out} holds probs-*.pt without a record of their config (probs.json); recomputing them",
                  file=sys.stderr)
            for cache in caches:
                cache.unlink()
        elif old != key and (diff := changed_keys(_as_today(old), key)):
            raise ValueError(f"{out} holds predictions of another config ({'; '.join(diff[:6])}"
                             f"{'; ...' if len(diff) > 6 else ''}); use a new --out, or remove {out}/probs-*.pt "
                             "to recompute them")
    write_json(record, key)


def _as_today(record: Any) -> Any:
    """A ``probs.json`` record with its config read as today's code reads it (an older trickbag's
    lacks the keys added since: their defaults are the same config)."""
    from trickbag.train.config import code_in, load_config

    try:
        if code_in(record["config"]):  # never import what a folder names just to compare it
            return record
        raw = load_config(record["config"]).to_dict()
    except (ValueError, TypeError, KeyError):
        return record  # a config today's code refuses differs anyway; changed_keys names where
    raw.pop("model", None)
    return {**record, "config": json.loads(json.dumps(raw, default=str))}


def _cached_probs(cache: Path, size: int) -> Tensor | None:
    """The probabilities cached in ``cache``, or None when there are none or the file is damaged
    (a torn write, another shape): then they are recomputed, with a warning. A file that
    ``weights_only`` refuses (a malicious pickle) stops the run."""
    from trickbag.train.checkpoint import UnsafeFileError, load_checkpoint

    if not cache.exists():
        return None
    try:
        probs = load_checkpoint(cache)
    except UnsafeFileError:
        raise
    except ValueError as exc:
        print(f"warning: {exc}; recomputing it", file=sys.stderr)
        return None
    if not isinstance(probs, Tensor) or probs.dim() != 2 or probs.shape[0] != size:
        print(f"warning: {cache} does not hold ({size}, classes) probabilities; recomputing it", file=sys.stderr)
        return None
    return probs


def _names(data) -> list[str]:
    return list(data.classes) or [str(i) for i in range(int(data.targets.max()) + 1)]


def _cleanlab_flags(probs: Tensor, labels: Tensor) -> Tensor | None:
    if not available("cleanlab"):
        return None
    from cleanlab.filter import find_label_issues as cl_find

    mask = cl_find(labels.numpy(), probs.numpy(), filter_by="prune_by_noise_rate")
    return torch.from_numpy(mask)


def _relative_paths(cfg, out: Path) -> dict[str, Any]:
    """The config as a dict whose relative data path still resolves from ``out``."""
    raw = cfg.to_dict()
    path = raw["data"].get("path")
    if path and not Path(path).is_absolute() and cfg.source:
        raw["data"]["path"] = os.path.relpath(Path(cfg.source).parent / path, out)
    return raw


def run(config: Any, models: str | Sequence[str] = "small_cnn,mlp", *, folds: int = 3, filter_by: str = "prune_by_noise_rate",
        rule: str = "confident", min_agree: int | None = None, out: str | Path = "runs/clean", overrides: Sequence[str] = (),
        grid: int = 32, retrain_seeds: int = 0, compare_cleanlab: bool = True, progress: bool = True) -> dict[str, Any]:
    """Find suspect labels in a config's training split.

    Every model type is trained ``folds`` times on the other folds; the out-of-sample
    probabilities are averaged over model types; confident learning (``filter_by``) and the
    agreement rule (``min_agree`` of the model types predict the same other class) flag
    examples, and ``rule`` decides which are suspects (``confident``, ``agreement``, ``either``
    or ``both``). Writes ``suspects.csv`` (given and suggested labels, scores, flags),
    ``suspects.png`` (the ``grid`` least trustworthy), ``excluded.txt`` and ``cleaned.yaml``
    (the config minus the suspects: ``trickbag train --config OUT/cleaned.yaml``), ``clean.json``
    and ``report.md``. When the config injects label noise (``data.label_noise``), precision
    and recall of every rule against the flipped labels are reported, with cleanlab's
    ``find_label_issues`` on the same probabilities when cleanlab is installed (extra ``clean``)
    and ``compare_cleanlab``; with
    ``retrain_seeds``, test accuracy after training on the noisy, the cleaned and the clean data.
    """
    from trickbag.data import write_exclusions
    from trickbag.train.build import load_splits
    from trickbag.train.config import load_config

    check_choice("filter_by", filter_by, FILTERS)
    check_choice("rule", rule, RULES)
    check_positive_int("folds", folds, minimum=2)
    check_positive_int("retrain_seeds", retrain_seeds, minimum=0)
    specs = parse_models(models)
    if min_agree is not None:  # before any training, not after it
        check_positive_int("min_agree", min_agree)
        if min_agree > len(specs):
            raise ValueError(f"min_agree must be at most the number of model types ({len(specs)}), got {min_agree}")
    cfg = load_config(config, list(overrides))
    cfg.train.progress = False
    cfg.train.checkpoint_every_epochs = None
    splits = load_splits(cfg)
    data = splits.train
    labels = data.targets
    names = _names(data)
    out = _open_out(out)
    _claim_caches(out, cfg, folds)
    member_probs, times = {}, {}
    for spec in specs:
        label = _label(spec)
        cache = out / f"probs-{label}.pt"
        cached = _cached_probs(cache, len(data))
        if cached is not None:
            member_probs[label] = cached
            continue
        m_cfg = cfg.replace(model=dict(spec))
        cpu0, t0 = time.process_time(), time.perf_counter()
        member_probs[label] = out_of_sample_probs(m_cfg, data, folds, seed=cfg.data.split_seed, progress=progress)
        times[label] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0, "load": os.getloadavg()[0]}
        save_torch(member_probs[label], cache)
    probs = torch.stack(list(member_probs.values())).mean(0)
    cl = find_label_issues(probs, labels, filter_by=filter_by)
    agree, agreed = agreement_issues(list(member_probs.values()), labels, min_agree=min_agree)
    suspects = {"confident": cl, "agreement": agree, "either": cl | agree, "both": cl & agree}[rule]
    quality = label_quality(probs, labels)
    margin = label_quality(probs, labels, "normalized_margin")
    suggested = probs.argmax(1)
    order = [int(i) for i in torch.nonzero(suspects).flatten()[quality[suspects].argsort()]]
    _write_csv(out / "suspects.csv",
               ["position", "given", "given_name", "suggested", "suggested_name", "given_prob", "suggested_prob",
                "normalized_margin", "confident_learning", "agreement", *[f"pred_{k}" for k in member_probs]],
               [[i, int(labels[i]), names[labels[i]], int(suggested[i]), names[suggested[i]],
                 f"{quality[i]:.4f}", f"{probs[i, suggested[i]]:.4f}", f"{margin[i]:.4f}", int(cl[i]), int(agree[i]),
                 *[int(p[i].argmax()) for p in member_probs.values()]] for i in order])
    grid_png = None
    if data.kind == "image" and order:
        top = order[:grid]
        titles = [f"#{i}: {names[labels[i]]}\n-> {names[suggested[i]]} ({probs[i, suggested[i]]:.2f})" for i in top]
        grid_png = _image_grid(data.inputs[top], titles, out / "suspects.png")
    write_exclusions(out / "excluded.txt", order, size=len(data), note=f"{len(order)} suspects by rule {rule!r}")
    cleaned = _relative_paths(cfg, out)
    cleaned["data"]["exclude"] = "excluded.txt"
    write_text(out / "cleaned.yaml", __import__("yaml").safe_dump(cleaned, sort_keys=False))
    result: dict[str, Any] = {"models": [_label(s) for s in specs], "folds": folds, "filter_by": filter_by, "rule": rule,
                              "min_agree": min_agree or len(specs), "size": len(data), "suspects": len(order),
                              "flagged": {"confident": int(cl.sum()), "agreement": int(agree.sum())},
                              "member_acc_vs_given": {k: float((p.argmax(1) == labels).double().mean())
                                                      for k, p in member_probs.items()},
                              "times": times, "config": cfg.to_dict(), "provenance": provenance()}
    if cfg.data.label_noise:
        clean_cfg = cfg.replace()
        clean_cfg.data.label_noise = None
        clean_cfg.data.exclude = None
        truth = load_splits(clean_cfg).train.targets != labels
        rules = {"confident learning": cl, "agreement": agree, "either": cl | agree, "both": cl & agree,
                 "argmax (naive)": probs.argmax(1) != labels}
        theirs = _cleanlab_flags(probs, labels) if compare_cleanlab else None
        if theirs is not None:
            rules["cleanlab find_label_issues"] = theirs
            result["cleanlab_overlap"] = {"ours": int(cl.sum()), "theirs": int(theirs.sum()),
                                          "both": int((cl & theirs).sum()),
                                          "jaccard": float((cl & theirs).sum() / max(1, int((cl | theirs).sum())))}
        result["noise"] = {"rate": cfg.data.label_noise.get("rate"), "mislabelled": int(truth.sum()),
                           "rules": {k: precision_recall(v, truth) for k, v in rules.items()}}
        result["suggestion_acc_on_flipped"] = float((suggested[truth & cl] == load_splits(clean_cfg).train.targets[truth & cl])
                                                    .double().mean()) if (truth & cl).any() else None
    if retrain_seeds:
        result["retrain"] = _retrain(cfg, out, retrain_seeds, progress)
    write_json(out / "clean.json", result, default=str)
    _report(out, result, grid_png)
    return result


def _retrain(cfg, out: Path, seeds: int, progress: bool) -> dict[str, Any]:
    """Test accuracy of the config trained on the noisy data, on the cleaned view, and (when
    the noise was injected) on the clean labels, over ``seeds`` paired seeds."""
    from trickbag.ablation.stats import paired
    from trickbag.train.build import build_run
    from trickbag.train.config import load_config

    arms = {"noisy labels": (cfg.to_dict(), cfg.source),
            "cleaned (suspects left out)": (load_config(out / "cleaned.yaml").to_dict(), str(out / "cleaned.yaml"))}
    if cfg.data.label_noise:
        oracle = cfg.to_dict()
        oracle["data"]["label_noise"] = None
        arms["clean labels (oracle)"] = (oracle, cfg.source)
    found = {}
    for arm, (raw, source) in arms.items():
        found[arm] = {}
        for i in range(seeds):
            c = load_config(raw)
            c.source = source
            c.train.seed = cfg.train.seed + i
            cpu0 = time.process_time()
            res = build_run(c).fit()
            found[arm][c.train.seed] = {"test_acc": res["test"]["test_acc"], "cpu_s": time.process_time() - cpu0,
                                        "wall_s": res["wall_time"]}
            if progress:
                print(f"  retrain {arm}, seed {c.train.seed}: test_acc {res['test']['test_acc']:.4f}", flush=True)
    ref = {s: v["test_acc"] for s, v in found["noisy labels"].items()}
    summary = {}
    for arm, per in found.items():
        accs = [v["test_acc"] for v in per.values()]
        row = {"mean": statistics.fmean(accs), "sd": statistics.stdev(accs) if len(accs) > 1 else float("nan"),
               "seeds": per, "cpu_s": statistics.fmean(v["cpu_s"] for v in per.values())}
        if arm != "noisy labels":
            p = paired(ref, {s: v["test_acc"] for s, v in per.items()})
            row["vs_noisy"] = {"mean": p.mean, "ci": [p.ci_low, p.ci_high], "p": p.p_value}
        summary[arm] = row
    return summary


def _report(out: Path, result: dict[str, Any], grid_png: Path | None) -> None:
    from trickbag.report import Page

    page = Page("Label cleaning: suspects from out-of-sample predictions of several models")
    page.paragraph(f"{result['size']} training examples; model types {', '.join(result['models'])}, {result['folds']}-fold "
                   f"out-of-sample probabilities averaged over the model types. Confident learning ({result['filter_by']}) "
                   f"flagged {result['flagged']['confident']}, the agreement rule (at least {result['min_agree']} model "
                   f"types predict the same other class with mean probability >= 0.5) {result['flagged']['agreement']}; "
                   f"rule {result['rule']!r} gives {result['suspects']} suspects (suspects.csv, excluded.txt, cleaned.yaml).")
    page.table(["model type", "out-of-sample agreement with the given labels"],
               [[k, v] for k, v in result["member_acc_vs_given"].items()])
    if "noise" in result:
        nz = result["noise"]
        page.heading(f"Against the injected noise ({nz['rate']:.0%} symmetric: {nz['mislabelled']} wrong labels)")
        page.table(["rule", "flagged", "precision", "recall", "F1"],
                   [[k, v["flagged"], v["precision"], v["recall"], v["f1"]] for k, v in nz["rules"].items()])
        if "cleanlab_overlap" in result:
            o = result["cleanlab_overlap"]
            page.paragraph(f"cleanlab's filter.find_label_issues (prune_by_noise_rate) on the same probabilities flagged "
                           f"{o['theirs']} examples against our {o['ours']}; {o['both']} in common (Jaccard {o['jaccard']:.3f}).")
        if result.get("suggestion_acc_on_flipped") is not None:
            page.paragraph(f"Of the truly flipped examples that confident learning flagged, the suggested label is the "
                           f"original one for {result['suggestion_acc_on_flipped']:.1%}.")
    if "retrain" in result:
        page.heading("Retraining")
        rows = []
        for arm, r in result["retrain"].items():
            d = r.get("vs_noisy")
            rows.append([arm, len(r["seeds"]), r["mean"], r["sd"],
                         f"{d['mean']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}]" if d else "", r["cpu_s"]])
        page.table(["training data", "seeds", "test acc", "sd", "vs noisy [95% CI]", "CPU s / run"], rows)
    if grid_png is not None:
        page.image(grid_png.name, "The least trustworthy suspects: position, given label -> suggested (probability)")
    prov = result["provenance"]
    page.heading("Provenance")
    page.bullets([f"trickbag {prov['trickbag']}, git {prov['git']}, torch {prov['torch']}, {prov['hardware'].get('cpu')}"]
                 + [f"{k}: {v['wall_s']:.0f} s wall, {v['cpu_s']:.0f} s CPU, load {v['load']:.1f}" for k, v in result["times"].items()])
    page.write(out)


def rank(config: Any, models: str | Sequence[str] = "small_cnn,mlp", *, pool: str = "val", out: str | Path = "runs/rank",
         overrides: Sequence[str] = (), grid: int = 32, progress: bool = True) -> dict[str, Any]:
    """Which unlabelled examples to label next: every model type trains on the training split
    and scores the ``pool`` split (its labels unused) by least confidence, margin and
    disagreement (:func:`~trickbag.clean.rank_unlabeled`). Writes ``to_label.csv`` (sorted by
    margin), ``to_label.png`` and ``rank.json``; since the pool has labels here, the error rate
    of the ensemble among the top-ranked tenth is reported against the pool's overall rate."""
    from trickbag.train.build import load_splits
    from trickbag.train.config import load_config

    check_choice("pool", pool, ("val", "test"))
    specs = parse_models(models)
    cfg = load_config(config, list(overrides))
    cfg.train.progress = False
    cfg.train.checkpoint_every_epochs = None
    splits = load_splits(cfg)
    data = getattr(splits, pool)
    if data is None:
        raise ValueError(f"the config's data has no {pool} split to rank (set data.val_fraction > 0, or --pool test)")
    out = _open_out(out)
    member = []
    for spec in specs:
        t0 = time.perf_counter()
        member.append(_fit_and_predict(cfg.replace(model=dict(spec)), splits.train, data))
        if progress:
            print(f"  {spec['name']}: trained and scored the {pool} pool ({time.perf_counter() - t0:.0f}s)", flush=True)
    scores = {m: rank_unlabeled(member, m) for m in RANKINGS if m != "disagreement" or len(member) > 1}
    mean = torch.stack(member).mean(0)
    wrong = mean.argmax(1) != data.targets
    top = max(1, len(data) // 10)
    summary = {m: {"error_rate_top_tenth": float(wrong[s.argsort(descending=True)[:top]].double().mean())}
               for m, s in scores.items()}
    order = scores["margin"].argsort(descending=True)
    names = _names(data)
    _write_csv(out / "to_label.csv", ["position", "predicted", "predicted_name", *scores],
               [[i, int(mean[i].argmax()), names[mean[i].argmax()], *[f"{s[i]:.4f}" for s in scores.values()]]
                for i in order.tolist()])
    if data.kind == "image":
        pick = order[:grid].tolist()
        _image_grid(data.inputs[pick], [f"#{i}: {names[mean[i].argmax()]}?\nmargin {1 - scores['margin'][i]:.2f}"
                                        for i in pick], out / "to_label.png")
    result = {"pool": pool, "size": len(data), "models": [_label(s) for s in specs], "overall_error_rate": float(wrong.double().mean()),
              "rankings": summary, "provenance": provenance()}
    write_json(out / "rank.json", result)
    return result

