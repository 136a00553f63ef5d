"""The ``trickbag`` command line: ``trickbag <verb> ...``."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from trickbag import catalog

__all__ = ["main", "build_parser"]


def _cmd_list(args: argparse.Namespace) -> int:
    tricks = catalog.by_kind(args.kind)
    width = shutil.get_terminal_size((120, 20)).columns
    name_w = max(len(t.name) for t in tricks)
    kind_w = max(len(t.kind) for t in tricks)
    summary_w = max(20, width - name_w - kind_w - 4)
    print(f"{'NAME':<{name_w}}  {'KIND':<{kind_w}}  SUMMARY")
    for t in sorted(tricks, key=lambda t: (catalog.KINDS.index(t.kind), t.name)):
        summary = textwrap.shorten(t.summary, summary_w, placeholder="...")
        print(f"{t.name:<{name_w}}  {t.kind:<{kind_w}}  {summary}")
    print(f"\n{len(tricks)} tricks. `trickbag show NAME` prints a method card.")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    trick = catalog.get(args.name)
    path = trick.card
    if not path.exists():
        print(f"{trick.name} ({trick.kind}): {trick.summary}\nPaper: {trick.paper}")
        print(f"(no method card at {path})")
        return 0
    print(path.read_text(encoding="utf-8"), end="")
    return 0


def _print_results(results: dict) -> None:
    final, test = results.get("final", {}), results.get("test", {})
    shown = ["train_loss", "val_loss", "val_acc"]
    shown += sorted(k for k in final if k.startswith("val_") and k not in shown)  # custom metrics too (val_p_true)
    parts = [f"{k} {final[k]:.4f}" for k in shown if isinstance(final.get(k), float)]
    first = [k for k in ("test_loss", "test_acc") if k in test]
    parts += [f"{k} {test[k]:.4f}" for k in first + sorted(set(test) - set(first)) if isinstance(test[k], float)]
    print("result: " + "  ".join(parts) + f"  ({results['wall_time']:.1f}s)")
    if results.get("stopped"):
        print(f"stopped: {results['stopped']}")


def _finished_results(run_dir: Path) -> dict | None:
    """The results of a finished run (its ``results.json``, written last and atomically), or
    None when the run has not finished."""
    try:
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) and "wall_time" in results else None


def _cmd_train(args: argparse.Namespace) -> int:
    from trickbag.train.config import load_config
    from trickbag.train.distributed import shutdown, world
    from trickbag.train.runs import resume_run, start_run

    if args.resume:
        if args.config or args.overrides:
            raise ValueError("--resume takes the run's own config; do not pass --config or overrides")
        done = _finished_results(Path(args.resume))
        if done is not None:  # its results, timing included, stay as they were
            if world()[0] == 0:
                print(f"run directory: {args.resume} (already finished; nothing to resume)")
                _print_results(done)
            if done.get("diverged"):
                if world()[0] == 0:
                    print(f"trickbag train: error: the run diverged; {done.get('kept')}", file=sys.stderr)
                return 1
            return 0
        run = resume_run(args.resume)
    else:
        if not args.config:
            raise ValueError("give --config CONFIG.yaml (or --resume RUN_DIR)")
        run = start_run(load_config(args.config, args.overrides), args.out)
    rank = world()[0]
    if rank == 0:
        print(f"run directory: {run.run_dir}")
    results = run.fit()
    if rank == 0:
        _print_results(results)
    shutdown()  # only on success: after an exception torchrun stops the other ranks
    if results.get("diverged"):
        if rank == 0:
            print(f"trickbag train: error: the run diverged; {results['kept']}", file=sys.stderr)
        return 1
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from trickbag.train.export import export_run

    path = export_run(args.dir, weights=args.weights, out=args.out)
    print(f"exported: {path}  (load it with torch.export.load(path).module())")
    return 0


def _seeds(text: str) -> int | str:
    """``--seeds``: a number of seeds per arm, or ``auto``."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be an integer >= 1 or 'auto', got {text!r}") from None


def _cmd_ablate(args: argparse.Namespace) -> int:
    if not args.quiet:  # before the imports below (torch): a second or two on a cold start
        print(f"trickbag ablate: starting ({args.config})", file=sys.stderr, flush=True)
    from trickbag.ablation import run
    from trickbag.ablation.report import table_text

    summary = run(args.config, args.tricks, seeds=args.seeds, budget=args.budget, mode=args.mode, metric=args.metric,
                  direction=args.direction, workers=args.workers,
                  storage=args.storage, out=args.out, overrides=args.overrides, study_name=args.study,
                  progress=not args.quiet)
    if "rows" in summary:
        print(table_text(summary["rows"], summary["metric"]))
        print(f"\nreport: {summary['report'][1]}  (and report.md; re-render with `trickbag report {summary['out']}`)")
    return 0


def _cmd_atlas(args: argparse.Namespace) -> int:
    if not args.quiet:
        print(f"trickbag atlas: starting ({args.suite})", file=sys.stderr, flush=True)
    import shlex

    from trickbag.atlas import run

    command = "trickbag atlas " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
    summary = run(args.suite, out=args.out, workers=args.workers, storage=args.storage, budget=args.budget,
                  seeds=args.seeds, study_name=args.study, progress=not args.quiet, command=command)
    counts = summary["counts"]
    print(f"atlas: {counts['done']} of {counts['planned']} trials done in {summary['wall_time'] / 60:.1f} min; "
          f"cells in {summary['out']}/cells.json" + ("; report: " + summary["out"] + "/report.md" if summary.get("report") else ""))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    folder = Path(args.dir)
    if (folder / "ablation.json").exists():
        from trickbag.ablation.report import render, table_text
        from trickbag.ablation.runner import load_spec

        result = render(folder)
        print(table_text(result["rows"], load_spec(folder)[1].metric))
        print(f"report: {result['report'][1]}")
        return 0
    if (folder / "atlas.json").exists():  # cells from the folder's study; run from where the suite's paths resolve
        from trickbag.atlas import collect_cells, load_suite
        from trickbag.atlas.runner import write_atlas_report

        meta, cells = collect_cells(folder)
        suite = load_suite(meta["suite_dict"], root=meta.get("suite_root", "."))
        write_atlas_report(folder, suite, cells, command=meta.get("command"), wall_time_s=meta.get("wall_time_s"))
        print(f"report: {folder / 'report.md'}")
        return 0
    if (folder / "search.json").exists():
        from trickbag.search.report import render as render_search

        result = render_search(folder)
        for w in result["warnings"]:
            print(f"warning: {w}")
        print(f"report: {result['report'][1]}")
        return 0
    if (folder / "config.yaml").exists():
        from trickbag.monitor.report import render_run

        result = render_run(folder)
        for d in result["diagnoses"]:
            print(f"diagnosis: {d['title']}: {d['message']}")
        print(f"report: {result['report'][1]}")
        return 0
    raise FileNotFoundError(f"{folder} holds no ablation (ablation.json), run (config.yaml) or search (search.json)")


def _cmd_search(args: argparse.Namespace) -> int:
    from trickbag.report.page import fmt
    from trickbag.search import run

    summary = run(args.config, args.space, trials=args.trials, stages=args.stages, sampler=args.sampler,
                  metric=args.metric, workers=args.workers, storage=args.storage, out=args.out,
                  overrides=args.overrides, study_name=args.study, progress=not args.quiet)
    best = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary["best"].items())
    print(f"best: {best}  ({summary['metric']} {fmt(summary['best_value'])}, one seed, selected on validation)")
    if summary.get("retrained"):
        r, t = summary["retrained"], summary.get("test")
        print(f"retrained with {r['n']} seeds: {summary['metric']} {fmt(r['mean'])} +- {fmt(r['sd'])}"
              + (f"; test split (reported once): {t['metric']} {fmt(t['mean'])}" if t else ""))
    for w in summary.get("warnings", []):
        print(f"warning: {w}")
    print(f"best config: {summary['out']}/best.yaml   report: {summary['report'][1]}")
    return 0


def _cmd_lr_find(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from trickbag._atomic import check_writable, write_json
    from trickbag.monitor import lr_find, plot_lr_find
    from trickbag.train.build import build_run
    from trickbag.train.config import load_config

    cfg = load_config(args.config, [*args.overrides, "train.progress=false"])
    run = build_run(cfg)
    out = Path(args.out) if args.out else Path("runs") / f"lr_find-{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_writable(out)  # before the sweep, not after it
    result = lr_find(run.trainer, min_lr=args.min, max_lr=args.max, steps=args.steps,
                     progress=True)
    write_json(out / "lr_find.json", result.to_dict())
    png = plot_lr_find(result, out / "lr_find.png")
    lo, hi = result.cyclic_bounds
    print(f"steepest descent: lr {result.steepest:.3g}")
    print(f"minimum / 10:     lr {result.min_over_10:.3g}")
    print(f"cyclical bounds:  {lo:.3g} to {hi:.3g}")
    print(f"{'stopped when the loss diverged' if result.stopped_early else 'swept the whole range'}; plot: {png}")
    return 0


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from trickbag.ensemble import run, table_text

    result = run(args.runs, data=args.data, combine=args.combine, calibrate=args.calibrate, bins=args.bins,
                 out=args.out, intervals=args.intervals, device=args.device)
    print(table_text(result["rows"], result["data"]))
    print(f"reliability diagram: {result['reliability']}  (and ensemble.json)")
    return 0


def _cmd_multitask(args: argparse.Namespace) -> int:
    from trickbag.multitask import parse_task, run

    tasks = dict(parse_task(t) for t in args.task)
    if not tasks:
        raise ValueError("give at least one --task NAME=MAP (e.g. --task coarse=fashion_mnist_coarse)")
    try:
        subsets = [int(v) for v in args.subsets.split(",")]
    except ValueError:
        raise ValueError(f"--subsets takes comma-separated training-set sizes such as 500,5000, "
                         f"got {args.subsets!r}") from None
    result = run(args.config, tasks, main_task=args.main, subsets=subsets, seeds=args.seeds,
                 soft_coefficient=args.soft_coefficient, out=args.out, overrides=args.overrides,
                 main_labels=args.main_labels, progress=not args.quiet)
    print((__import__("pathlib").Path(args.out) / "report.md").read_text().split("## Provenance")[0].rstrip())
    print(f"report: {result['report'][0]}")
    return 0


def _cmd_clean(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.rank_unlabeled:
        from trickbag.clean import rank

        result = rank(args.config, args.models, pool=args.pool, out=args.out, overrides=args.overrides,
                      progress=not args.quiet)
        print(f"ranked {result['size']} {result['pool']} examples; ensemble error rate {result['overall_error_rate']:.3f} "
              "overall, in the top tenth by:")
        for method, r in result["rankings"].items():
            print(f"  {method:<17} {r['error_rate_top_tenth']:.3f}")
        print(f"to label next: {Path(args.out) / 'to_label.csv'}")
        return 0
    from trickbag.clean import run

    result = run(args.config, args.models, folds=args.folds, filter_by=args.filter_by, rule=args.rule,
                 min_agree=args.min_agree, out=args.out, overrides=args.overrides, retrain_seeds=args.retrain_seeds,
                 progress=not args.quiet)
    out = Path(args.out)
    print(f"{result['suspects']} suspects of {result['size']} (confident learning {result['flagged']['confident']}, "
          f"agreement {result['flagged']['agreement']}): {out / 'suspects.csv'}")
    for rule, pr in result.get("noise", {}).get("rules", {}).items():
        print(f"  {rule:<28} flagged {pr['flagged']:>5}  precision {pr['precision']:.3f}  recall {pr['recall']:.3f}")
    for arm, r in result.get("retrain", {}).items():
        print(f"  retrained on {arm:<28} test_acc {r['mean']:.4f} (sd {r['sd']:.4f})")
    print(f"train on the cleaned view: trickbag train --config {out / 'cleaned.yaml'}   report: {out / 'report.md'}")
    return 0


def _cmd_gan(args: argparse.Namespace) -> int:
    from trickbag.gan.runner import run

    summary = run(args.config, out=args.out, overrides=args.overrides, progress=not args.quiet)
    for name, row in summary["summary"].items():
        if "modes" in row:
            print(f"{name:8s} modes covered {row['modes']['mean']:.1f}/{row['total']} (every mode in "
                  f"{row['all_modes']}/{row['n']} runs), high-quality share {row['hq']['mean']:.3f}, {row['time']:.0f}s a run")
        else:
            print(f"{name:8s} fd_ours {row['fd']:.4g} (best {row['best_fd']:.4g}), Spearman(W estimate, fd_ours) "
                  f"{row['corr']:.2f}, {row['time']:.0f}s a run")
    print(f"report: {summary['report'][1]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trickbag",
        description="Deep-learning training tricks: the catalog, training, ablations, search, reports.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="print the trick catalog as a table")
    p.add_argument("--kind", choices=catalog.KINDS, help="only tricks of this kind")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("show", help="print a trick's method card")
    p.add_argument("name")
    p.set_defaults(func=_cmd_show)

    p = sub.add_parser("train", help="train from a YAML config (torchrun -m trickbag train ... for DDP)")
    p.add_argument("--config", help="the run's YAML config")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. train.epochs=3 model.width=16")
    p.add_argument("--out", help="run directory (default runs/<config>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or stopped run from its last checkpoint")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("ablate", help="which tricks help: arms x seeds with paired statistics and a report")
    p.add_argument("--config", required=True, help="the base run config (its ablation: section gives defaults)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the base config")
    p.add_argument("--tricks", help="tricks to ablate, e.g. label_smoothing,mixup:alpha=0.2,cutout")
    p.add_argument("--seeds", type=_seeds, help="seeds per arm (default 3), or auto: add paired seeds to undecided "
                                               "arms (an anytime-valid sequential test) within --budget")
    p.add_argument("--budget", type=int, help="with --seeds auto: the most trials in all")
    p.add_argument("--mode", choices=["add-one", "leave-one-out", "grid", "factorial"],
                   help="factorial: a resolution IV fractional factorial screening (main effects and interactions)")
    p.add_argument("--metric", help="final-epoch metric to compare (default val_acc)")
    p.add_argument("--direction", choices=["max", "min"],
                   help="is the metric better higher (max) or lower (min)? Default: from its name (loss, error, "
                        "nll, ece, perplexity: min)")
    p.add_argument("--workers", type=int, help="trials at once on this machine")
    p.add_argument("--storage", help="Optuna storage URL (default SQLite in --out; postgresql://... for several machines)")
    p.add_argument("--out", default="runs/ablation", help="output folder (default runs/ablation)")
    p.add_argument("--study", help="study name (default: a hash of the plan, so the same command resumes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-trial lines")
    p.set_defaults(func=_cmd_ablate)

    p = sub.add_parser("atlas", help="which tricks help where: tasks x tricks, paired seeds, pooled across tasks")
    p.add_argument("--suite", required=True, help="the suite YAML (tasks, tricks; configs/atlas_cpu.yaml)")
    p.add_argument("--out", default="runs/atlas", help="output folder (default runs/atlas)")
    p.add_argument("--workers", type=int, help="trials at once on this machine (default: the suite's)")
    p.add_argument("--storage", help="Optuna storage URL (default SQLite in --out; postgresql://... for several machines)")
    p.add_argument("--budget", type=int, help="the most trials of the whole atlas")
    p.add_argument("--seeds", type=_seeds, help="paired seeds per cell (default: the suite's), or auto within --budget")
    p.add_argument("--study", help="study name (default: a hash of the plan, so the same command resumes)")
    p.add_argument("--quiet", action="store_true", help="no per-trial lines")
    p.set_defaults(func=_cmd_atlas)

    p = sub.add_parser("search", help="hyper-parameter search: random, log-scale, coarse to fine, with warnings")
    p.add_argument("--config", required=True, help="the base run config (its search: section gives defaults)")
    p.add_argument("--space", help="the search space YAML (key: distribution)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--trials", type=int, help="coarse trials (default 20; the fine stage runs half as many)")
    p.add_argument("--stages", help="coarse or coarse,fine (default)")
    p.add_argument("--sampler", choices=["random", "tpe"])
    p.add_argument("--metric", help="validation metric to select on (default val_acc)")
    p.add_argument("--workers", type=int)
    p.add_argument("--storage", help="Optuna storage URL (default SQLite in --out)")
    p.add_argument("--out", default="runs/search")
    p.add_argument("--study", help="study name (default: a hash of the search, so the same command resumes)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("lr-find", help="learning-rate range test: suggestions and a plot")
    p.add_argument("--config", required=True)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--min", type=float, default=1e-7, help="smallest learning rate (default 1e-7)")
    p.add_argument("--max", type=float, default=10.0, help="largest learning rate (default 10)")
    p.add_argument("--steps", type=int, default=200, help="updates in the sweep (default 200)")
    p.add_argument("--out", help="folder for lr_find.png and lr_find.json (default runs/lr_find-<config>-<time>; "
                                 "a run directory, say)")
    p.set_defaults(func=_cmd_lr_find)

    p = sub.add_parser("ensemble", help="evaluate trained runs as an ensemble: accuracy, NLL, ECE, reliability diagram")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (or weights files inside them, "
                   "e.g. RUN/snapshots/snapshot-1.pt)")
    p.add_argument("--data", default="test", choices=["test", "val"], help="the runs' split to evaluate (default test)")
    p.add_argument("--combine", default="probs", choices=["probs", "logits"],
                   help="average the softmax outputs (default) or the logits")
    p.add_argument("--calibrate", action="store_true", help="also fit temperatures on the validation split")
    p.add_argument("--bins", type=int, default=15, help="confidence bins of the ECE (default 15)")
    p.add_argument("--intervals", type=int, default=0, metavar="N", help="bootstrap samples for 95%% intervals (0: none)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.add_argument("--out", default="runs/ensemble", help="folder for reliability.png and ensemble.json")
    p.set_defaults(func=_cmd_ensemble)

    p = sub.add_parser("multitask", help="single-task vs hard vs soft parameter sharing, over data sizes and seeds")
    p.add_argument("--config", required=True, help="the run config: its data, model, optimizer and length")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--task", action="append", default=[], metavar="NAME=MAP",
                   help="a second task labelled by a map of the classes: coarse=0,1,0,... or coarse=fashion_mnist_coarse")
    p.add_argument("--main", default="fine", help="the name of the data set's own labels (default fine)")
    p.add_argument("--subsets", default="500,5000", help="training-set sizes (default 500,5000)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--soft-coefficient", type=float, default=0.02, help="soft sharing's penalty (default 0.02)")
    p.add_argument("--main-labels", type=int, metavar="N",
                   help="keep the main task's label on only N training examples (the other tasks keep theirs)")
    p.add_argument("--out", default="runs/multitask")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_multitask)

    p = sub.add_parser("clean", help="find suspect labels with k-fold predictions of several models; or rank examples to label")
    p.add_argument("--config", required=True, help="the run config: its data (training split) and training recipe")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--models", default="small_cnn,mlp", help="model types, e.g. small_cnn:width=16,mlp,resnet_cifar:depth=8")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--filter-by", default="prune_by_noise_rate", choices=["prune_by_noise_rate", "confident_joint", "argmax"])
    p.add_argument("--rule", default="confident", choices=["confident", "agreement", "either", "both"],
                   help="which flags make a suspect (default: confident learning)")
    p.add_argument("--min-agree", type=int, help="model types that must agree on another class (default all)")
    p.add_argument("--retrain-seeds", type=int, default=0, help="also retrain on noisy vs cleaned data with N seeds")
    p.add_argument("--rank-unlabeled", action="store_true",
                   help="instead: rank the --pool split by least confidence, margin and disagreement")
    p.add_argument("--pool", default="val", choices=["val", "test"], help="the split treated as unlabelled")
    p.add_argument("--out", default="runs/clean")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_clean)

    p = sub.add_parser("gan", help="train GANs (gan, wgan, wgan_gp) on 2-D mixtures or Fashion-MNIST: coverage, quality, report")
    p.add_argument("--config", required=True, help="the GAN YAML config (configs/gan_ring.yaml ...)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. train.steps=500 seeds=2")
    p.add_argument("--out", default="runs/gan", help="output folder; the same command again resumes (default runs/gan)")
    p.add_argument("--quiet", action="store_true", help="no per-run lines")
    p.set_defaults(func=_cmd_gan)

    p = sub.add_parser("report", help="render the report of an ablation, atlas, run or search folder")
    p.add_argument("dir")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("export", help="a run's model as a torch.export program (RUN_DIR/model.pt2)")
    p.add_argument("dir", help="a finished run directory")
    p.add_argument("--weights", choices=("best", "final"), default="best",
                   help="best_model.pt (default) or model.pt")
    p.add_argument("--out", default=None, help="where to write the program (default RUN_DIR/model.pt2)")
    p.set_defaults(func=_cmd_export)

    debug_help = "on an error, print the traceback too (by default: one line)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    for p in sub.choices.values():
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    for verb in FOLDER_READERS:  # verbs that read a config from a run or results folder
        sub.choices[verb].add_argument(
            "--trust", action="store_true", help="run the code (plugins, package.module:callable) that the "
            "folder's config names; a received folder is code, as a pickle is (default: refuse)")
    return parser


FOLDER_READERS = ("train", "ensemble", "export", "report")


def _describe_os_error(exc: OSError) -> str:
    """One sentence for a failed file operation: the path (the target, not its temporary
    file) and why, in words."""
    import errno

    from trickbag._atomic import target_of

    why = {errno.ENOSPC: "the disk is full (no space left on device)",
           errno.EROFS: "the file system is read-only",
           errno.EACCES: "permission denied", errno.EPERM: "permission denied",
           errno.EDQUOT: "the disk quota is exceeded", errno.EFBIG: "the file would exceed the file-size limit",
           errno.ENOTDIR: "a part of the path is a file, not a folder",
           errno.EEXIST: "a file of that name is in the way",
           errno.ENOENT: "no such file or folder"}.get(exc.errno, exc.strerror or str(exc))
    where = exc.filename2 if exc.filename2 is not None and exc.errno != errno.ENOENT else exc.filename
    return f"{target_of(str(where))}: {why}" if where is not None else why


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parse_args``, with ``KEY=VALUE`` overrides accepted anywhere on the line (argparse
    takes a positional list only in one piece: ``--config c.yaml --out x train.epochs=3`` would
    leave the override unrecognized)."""
    args, extra = parser.parse_known_args(argv)
    overrides = [a for a in extra if "=" in a and not a.startswith("-")]
    if extra and (len(overrides) < len(extra) or not isinstance(getattr(args, "overrides", None), list)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if overrides:
        args.overrides = [*args.overrides, *overrides]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``trickbag <verb>``. Bad input, missing files, unreachable or unreadable storage and
    failed writes (read-only or full disks) end with one line on stderr and exit code 2 (with
    ``--debug``, the traceback too); a diverged training run exits with 1."""
    parser = build_parser()
    args = _parse(parser, argv)
    try:
        if getattr(args, "trust", False):
            from trickbag.train.config import trusted

            with trusted():
                return int(args.func(args) or 0)
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `trickbag list | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, ImportError, OSError) as exc:
        if getattr(args, "debug", False):
            import traceback

            traceback.print_exc()
        message = _describe_os_error(exc) if isinstance(exc, OSError) and exc.errno is not None else str(exc)
        message = " ".join(message.split()) or type(exc).__name__  # one line, whatever the source wrote
        print(f"trickbag {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"trickbag {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
