"""The ``trickbag`` command line: ``trickbag <verb> ...``."""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from collections.abc import Sequence

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
        print(f"(the method card {path.name} ships with the source tree under docs/tricks/)")
        return 0
    print(path.read_text(encoding="utf-8"), end="")
    return 0


def _print_results(results: dict) -> None:
    final = results.get("final", {})
    parts = [f"{k} {final[k]:.4f}" for k in ("train_loss", "val_loss", "val_acc") if isinstance(final.get(k), float)]
    parts += [f"{k} {v:.4f}" for k, v in results.get("test", {}).items() if k in ("test_loss", "test_acc")]
    print("result: " + "  ".join(parts) + f"  ({results['wall_time']:.1f}s)")
    if results.get("stopped"):
        print(f"stopped: {results['stopped']}")


def _cmd_train(args: argparse.Namespace) -> int:
    from trickbag.train.config import load_config
    from trickbag.train.distributed import shutdown, world
    from trickbag.train.runs import resume_run, start_run

    if args.resume:
        if args.config or args.overrides:
            raise ValueError("--resume takes the run's own config; do not pass --config or overrides")
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
    return 0


def _cmd_ablate(args: argparse.Namespace) -> int:
    from trickbag.ablation import run
    from trickbag.ablation.report import table_text

    summary = run(args.config, args.tricks, seeds=args.seeds, mode=args.mode, metric=args.metric, workers=args.workers,
                  storage=args.storage, out=args.out, overrides=args.overrides, study_name=args.study,
                  progress=not args.quiet)
    if "rows" in summary:
        print(table_text(summary["rows"], summary["metric"]))
        print(f"\nreport: {summary['report'][1]}  (and report.md; re-render with `trickbag report {summary['out']}`)")
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
    from trickbag.search import run

    summary = run(args.config, args.space, trials=args.trials, stages=args.stages, sampler=args.sampler,
                  metric=args.metric, workers=args.workers, storage=args.storage, out=args.out,
                  overrides=args.overrides, study_name=args.study, progress=not args.quiet)
    best = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary["best"].items())
    print(f"best: {best}  ({summary['metric']} {summary['best_value']:.4f})")
    for w in summary.get("warnings", []):
        print(f"warning: {w}")
    print(f"best config: {summary['out']}/best.yaml   report: {summary['report'][1]}")
    return 0


def _cmd_lr_find(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from trickbag.monitor import lr_find, plot_lr_find
    from trickbag.train.build import build_run
    from trickbag.train.config import load_config

    cfg = load_config(args.config, [*args.overrides, "train.progress=false"])
    run = build_run(cfg)
    result = lr_find(run.trainer, min_lr=args.min, max_lr=args.max, steps=args.steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lr_find.json").write_text(json.dumps(result.to_dict(), indent=1))
    png = plot_lr_find(result, out / "lr_find.png")
    lo, hi = result.cyclic_bounds
    print(f"steepest descent: lr {result.steepest:.3g}")
    print(f"minimum / 10:     lr {result.min_over_10:.3g}")
    print(f"cyclical bounds:  {lo:.3g} to {hi:.3g}")
    print(f"{'stopped when the loss diverged' if result.stopped_early else 'swept the whole range'}; plot: {png}")
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
    p.add_argument("--seeds", type=int, help="seeds per arm (default 3)")
    p.add_argument("--mode", choices=["add-one", "leave-one-out", "grid"])
    p.add_argument("--metric", help="final-epoch metric to compare (default val_acc)")
    p.add_argument("--workers", type=int, help="trials at once on this machine")
    p.add_argument("--storage", help="Optuna storage URL (default SQLite in --out; postgresql://... for several machines)")
    p.add_argument("--out", default="runs/ablation", help="output folder (default runs/ablation)")
    p.add_argument("--study", help="study name (default: a hash of the plan, so the same command resumes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-trial lines")
    p.set_defaults(func=_cmd_ablate)

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
    p.add_argument("--out", default=".", help="folder for lr_find.png and lr_find.json (a run directory, say)")
    p.set_defaults(func=_cmd_lr_find)

    p = sub.add_parser("gan", help="train GANs (gan, wgan, wgan_gp) on 2-D mixtures or Fashion-MNIST: coverage, quality, report")
    p.add_argument("--config", required=True, help="the GAN YAML config (configs/gan_ring.yaml ...)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides, e.g. train.steps=500 seeds=2")
    p.add_argument("--out", default="runs/gan", help="output folder; the same command again resumes (default runs/gan)")
    p.add_argument("--quiet", action="store_true", help="no per-run lines")
    p.set_defaults(func=_cmd_gan)

    p = sub.add_parser("report", help="render the report of an ablation, run or search folder")
    p.add_argument("dir")
    p.set_defaults(func=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"trickbag {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"trickbag {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `trickbag list | head`: the reader left; say nothing more
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
