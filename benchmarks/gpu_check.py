"""Everything still owed on a GPU, in one command: the CUDA tests, the fast base in bf16 and fp16
over ten seeds, a 99-trial ablation on the fast base, the Monitor's overhead, FusedRAdam's step.

Sections, in this order, each in a process of its own with its own time budget (a section that
fails, hangs or runs out of time costs only itself):

- ``tests``: every test marked ``cuda`` (``pytest -m cuda`` over the files that use the marker,
  among them tests/train/test_fp16_gradient_transforms.py and tests/optim/test_radam.py), then
  tests/test_properties.py, whose property sweeps draw CUDA inputs when a GPU is present;
- ``speedrun_bf16``, ``speedrun_fp16``: configs/cifar10_speedrun.yaml with ``train.precision``
  bf16, then fp16, through benchmarks/cifar10_speedrun.py's ``timed_fit``: one warm-up run
  (compilation and cuDNN autotuning; its extra time is the compile time), then one run per seed,
  training timed with CUDA events, the test split scored with TTA after it; fp16 runs also report
  the steps the gradient scaler skipped;
- ``optimizer``: benchmarks/optimizer_step.py (FusedRAdam against torch's RAdam and fused AdamW);
- ``monitor``: benchmarks/monitor_overhead.py at the Monitor's default interval;
- ``ablation``: configs/cifar10_ablation.yaml (leave-one-out over the fast base's eight tricks,
  9 arms x 11 seeds) through ``trickbag.ablation.run`` with its four persistent workers; the wall
  time of the whole call. It gets whatever time is left before the deadline.

Results go to ``--out`` after every section (so a killed command keeps what finished):
``gpu_check.json`` (everything), ``gpu_check.md`` (the summary; also printed last),
``gpu_check_pytest.log`` and ``gpu_check_ablation.md`` (the ablation's report). Decoded data are
cached in a temporary folder for the length of the command. After ``--deadline-s`` seconds the
section running is stopped (what it measured so far is kept) and the rest are recorded as
skipped.

``--quick`` runs every section tiny on the CPU (synthetic images, two seeds, a 4-trial ablation
with two workers, a few optimizer steps) to check that the script works; its numbers mean
nothing. tests/test_gpu_check.py runs it.

Run (repository root; the CIFAR-10 JPEG pack where --data says):
    python benchmarks/gpu_check.py [--data PATH] [--out DIR] [--deadline-s 510] [--sections a,b]
    python benchmarks/gpu_check.py --quick --out /tmp/gpu_check
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECTIONS = ("tests", "speedrun_bf16", "speedrun_fp16", "optimizer", "monitor", "ablation")
#: Seconds each section may take on a GPU (None: whatever is left before the deadline), and the
#: least time left for which it is still started.
BUDGET_S: dict[str, float | None] = {"tests": 120, "speedrun_bf16": 130, "speedrun_fp16": 130, "optimizer": 45,
                                     "monitor": 60, "ablation": None}
MIN_START_S = {"tests": 30, "speedrun_bf16": 45, "speedrun_fp16": 45, "optimizer": 15, "monitor": 20, "ablation": 45}
QUICK_BUDGET_S = 600.0
GRACE_S = 15.0  # beyond a section's budget before it is stopped (it stops adding work at its budget)
SEEDS = 10

SPEEDRUN = ROOT / "configs" / "cifar10_speedrun.yaml"
ABLATION = ROOT / "configs" / "cifar10_ablation.yaml"
QUICK_ABLATION = ["data.name=synthetic", "data.path=null",
                  "data.options={num_train: 256, num_test: 64, shape: [3, 32, 32], num_classes: 10}",
                  "data.batch_size=64", "data.eval_batch_size=64", "model.widths=[8,16,16]", "train.steps=6",
                  "train.epochs=2", "train.precision=fp32", "train.channels_last=false", "train.device=cpu"]


# ---- a section's side: measure, and write what was measured after every step ------------------------

def _clean(obj: Any) -> Any:
    """JSON-safe: non-finite floats (a missing standard deviation) become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


class Report:
    """A section's results, rewritten atomically to ``path`` at every :meth:`update`."""

    def __init__(self, path: Path):
        self.path, self.data = path, {"status": "running"}

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(_clean(self.data), indent=1, default=str))
        os.replace(tmp, self.path)


def _device(quick: bool):
    import torch

    return torch.device("cpu" if quick else "cuda")


def _device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (quick check; not a result)"


def _summary_counts(text: str) -> dict[str, int]:
    """pytest's last line (``3 passed, 1 skipped in 2.0s``) as counts."""
    counts: dict[str, int] = {}
    for line in reversed(text.strip().splitlines()):
        found = re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)", line)
        if found:
            for n, what in found:
                counts["errors" if what.startswith("error") else what] = int(n)
            break
    return counts


def cuda_test_files() -> list[str]:
    """The test files that mark tests ``cuda`` (found by the marker, so new ones join)."""
    found = [p for p in sorted((ROOT / "tests").rglob("test_*.py")) if "mark.cuda" in p.read_text(errors="ignore")]
    return [str(p.relative_to(ROOT)) for p in found]


def section_tests(rep: Report, args: argparse.Namespace, budget: float) -> None:
    start = time.monotonic()
    runs = [("cuda-marked tests", ["-m", "cuda", *cuda_test_files()])]
    if not args.quick:
        runs.append(("property sweeps (CUDA draws)", ["tests/test_properties.py"]))
    log_path = Path(args.out) / "gpu_check_pytest.log"
    results = []
    with open(log_path, "w") as log:
        for name, targets in runs:
            cmd = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *targets]
            left = budget - (time.monotonic() - start)
            if left < 10:
                results.append({"name": name, "status": "skipped (budget)", "command": " ".join(cmd[2:])})
                rep.update(runs=results)
                continue
            t0 = time.monotonic()
            log.write(f"$ {' '.join(cmd[2:])}\n")
            log.flush()
            try:
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=left)
                out, rc, status = proc.stdout + proc.stderr, proc.returncode, "ok" if proc.returncode == 0 else "failed"
            except subprocess.TimeoutExpired as exc:
                out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
                rc, status = None, "timeout"
            log.write(out + "\n")
            log.flush()
            results.append({"name": name, "command": " ".join(cmd[2:]), "status": status, "returncode": rc,
                            "seconds": time.monotonic() - t0, "counts": _summary_counts(out),
                            "failures": [ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))],
                            "tail": out[-3000:]})
            rep.update(runs=results)
    rep.update(log=log_path.name)


def section_speedrun(rep: Report, args: argparse.Namespace, budget: float, precision: str) -> None:
    import torch

    sys.path.insert(0, str(HERE))
    import cifar10_speedrun as sr

    from trickbag.train.build import load_splits
    from trickbag.train.config import load_config

    start = time.monotonic()
    device = _device(args.quick)
    overrides = [f"train.precision={precision}"]
    if args.quick:
        cfg = load_config(SPEEDRUN, [*sr.QUICK, *overrides])
        splits = sr.quick_splits()
    else:
        torch.backends.cudnn.benchmark = True
        cfg = load_config(SPEEDRUN, [f"data.path={args.data}", *overrides])
        t0 = time.monotonic()
        splits = load_splits(cfg)
        rep.update(data_s=time.monotonic() - t0)
    rep.update(device=_device_name(device), torch=torch.__version__, precision=precision,
               overrides=[*(sr.QUICK if args.quick else []), *overrides], seeds_planned=args.seeds)
    warm = sr.timed_fit(sr.with_seed(cfg, 10_000), splits, device)
    rep.update(warmup=warm)
    runs: list[dict] = []
    for seed in range(args.seeds):
        per_run = max(r["build_s"] + r["train_s"] + r["eval_s"] for r in runs) if runs else 0.0
        if time.monotonic() - start + 1.2 * per_run > budget:
            rep.update(stopped=f"time budget ({budget:.0f} s) reached after {len(runs)} seeds")
            break
        runs.append({"seed": seed, **sr.timed_fit(sr.with_seed(cfg, seed), splits, device)})
        rep.update(runs=runs, **sr.summarize(runs, warm))


def section_optimizer(rep: Report, args: argparse.Namespace, budget: float) -> None:
    sys.path.insert(0, str(HERE))
    import optimizer_step

    if args.quick:
        rep.update(**optimizer_step.measure(_device(True), steps=3, repeats=2, warmup=2, depth=20))
    else:
        rep.update(**optimizer_step.measure(_device(False), steps=200, repeats=15))


def section_monitor(rep: Report, args: argparse.Namespace, budget: float) -> None:
    sys.path.insert(0, str(HERE))
    import monitor_overhead

    if args.quick:
        rep.update(**monitor_overhead.measure(False, steps=4, repeats=1, variants=("none", "default"),
                                              warmup_steps=2, examples=512))
    else:
        rep.update(**monitor_overhead.measure(True, steps=200, repeats=5, variants=("none", "default")))


class _Stop(BaseException):
    """SIGTERM: the deadline came."""


def _trial_counts(out: Path) -> dict[str, Any]:
    """Trials of the ablation in ``out`` by state, read from its Optuna storage."""
    import optuna

    from trickbag.ablation.runner import load_spec

    meta, _ = load_spec(out)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = optuna.load_study(study_name=meta["study"], storage=meta["storage"]).get_trials(deepcopy=False)
    counts: dict[str, Any] = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    done = [t for t in trials if t.state.name == "COMPLETE" and t.datetime_complete and t.datetime_start]
    if done:
        first = min(t.datetime_start for t in done)
        last = max(t.datetime_complete for t in done)
        counts["first_to_last_s"] = (last - first).total_seconds()
        counts["train_s_mean"] = sum(t.user_attrs.get("train_time", 0.0) for t in done) / len(done)
    return counts


def section_ablation(rep: Report, args: argparse.Namespace, budget: float) -> None:
    import torch

    from trickbag.ablation import run as ablate
    from trickbag.train.config import load_config

    out = Path(args.workdir) / "ablation"
    if args.quick:
        overrides, kwargs = QUICK_ABLATION, {"tricks": "label_smoothing:smoothing=0.2", "seeds": args.seeds, "workers": 2}
    else:
        overrides, kwargs = [f"data.path={args.data}"], {}
    section = load_config(ABLATION, overrides).ablation
    rep.update(device=_device_name(_device(args.quick)), torch=torch.__version__, config=ABLATION.name,
               overrides=overrides, workers=kwargs.get("workers", section.get("workers")),
               seeds=kwargs.get("seeds", section.get("seeds")), mode=section.get("mode"))

    def stop(signum, frame):
        raise _Stop()

    signal.signal(signal.SIGTERM, stop)
    t0 = time.monotonic()
    summary: dict[str, Any] = {}
    try:
        summary = ablate(str(ABLATION), out=out, overrides=overrides, progress=True, **kwargs)
        finished = True
    except _Stop:
        finished = False
    wall = time.monotonic() - t0
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    fields: dict[str, Any] = {"wall_s": wall, "finished": finished}
    with contextlib.suppress(Exception):
        fields["trials"] = _trial_counts(out)
    if summary:
        fields["ablation_wall_s"] = summary.get("wall_time")  # trials only (after data and arm checks)
        fields["metric"] = summary.get("metric")
        fields["rows"] = [{k: r.get(k) for k in ("label", "n", "mean", "std", "effect", "low", "high", "p_adj",
                                                  "verdict", "time") if k in r}
                          for r in summary.get("rows", [])]
        report = out / "report.md"
        if report.exists():
            shutil.copy(report, Path(args.out) / "gpu_check_ablation.md")
            fields["report"] = "gpu_check_ablation.md"
    rep.update(**fields)
    if not finished:
        raise _Stop()


SECTION_FUNCS: dict[str, Callable[..., None]] = {
    "tests": section_tests,
    "speedrun_bf16": lambda rep, args, budget: section_speedrun(rep, args, budget, "bf16"),
    "speedrun_fp16": lambda rep, args, budget: section_speedrun(rep, args, budget, "fp16"),
    "optimizer": section_optimizer,
    "monitor": section_monitor,
    "ablation": section_ablation,
}


def run_section(args: argparse.Namespace) -> int:
    rep = Report(Path(args.workdir) / f"{args.section}.json")
    rep.update(started=time.time(), budget_s=args.budget_s)
    try:
        SECTION_FUNCS[args.section](rep, args, args.budget_s)
    except _Stop:
        rep.update(status="stopped at the deadline")
        return 1
    except BaseException:  # recorded, not raised: the next section still runs
        rep.update(status="error", error=traceback.format_exc(limit=12))
        return 1
    rep.update(status="ok")
    return 0


# ---- the command's side: one process per section, the deadline, the summary ----------------------------

def _child(args: argparse.Namespace, name: str, budget: float, hard: float, workdir: Path, env: dict) -> dict:
    """Run one section in its own process group; stop it (SIGTERM, then SIGKILL) after ``hard`` s."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--section", name, "--workdir", str(workdir),
           "--budget-s", f"{budget:.1f}", "--data", args.data, "--out", str(args.out), "--seeds", str(args.seeds)]
    if args.quick:
        cmd.append("--quick")
    log_path = workdir / f"{name}.log"
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        killed = None
        try:
            proc.wait(timeout=hard)
        except subprocess.TimeoutExpired:
            killed = "stopped (time budget)"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        with contextlib.suppress(ProcessLookupError):  # leftovers of the section (ablation workers)
            os.killpg(proc.pid, signal.SIGKILL)
    path = workdir / f"{name}.json"
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        result = {"status": "error", "error": "the section wrote no results"}
    if killed and result.get("status") in ("running", "stopped at the deadline"):
        result["status"] = f"{killed}: partial"
    result["seconds"] = time.monotonic() - t0
    result["returncode"] = proc.returncode
    text = log_path.read_text(errors="replace")
    result["log_tail"] = text[-4000:]
    return result


def _fmt(x: Any, spec: str = ".3f", scale: float = 1.0) -> str:
    return "-" if x is None else format(x * scale, spec)


def _headline(name: str, r: dict) -> str:
    """One line of the summary table: what the section found."""
    if r.get("status") == "skipped":
        return r.get("reason", "")
    if "error" in r and not any(k in r for k in ("runs", "ms_per_step", "trials")):
        lines = r["error"].strip().splitlines()
        return lines[-1][:160] if lines else "error"
    if name == "tests":
        parts = []
        for run in r.get("runs", []):
            c = run.get("counts", {})
            parts.append(f"{run['name']}: " + ", ".join(f"{v} {k}" for k, v in c.items()) if c else
                         f"{run['name']}: {run.get('status')}")
        return "; ".join(parts)
    if name.startswith("speedrun"):
        if "test_acc_mean" not in r:
            return "no seed finished"
        skipped = r.get("skipped_steps")
        extra = f"; scaler skipped {sum(skipped)} steps in all" if skipped is not None else ""
        return (f"{100 * r['test_acc_mean']:.2f} +- {100 * r['test_acc_sd']:.2f} % (TTA) over {r['seeds']} seeds; "
                f"{r['train_s_median']:.2f} s a run, compile {r['compile_s']:.0f} s{extra}")
    if name == "optimizer" and "ms_per_step" in r:
        ms = r["ms_per_step"]
        return ", ".join(f"{k} {v:.3f} ms" for k, v in ms.items())
    if name == "monitor" and "overhead_pct" in r:
        return (f"{r['ms_per_step']['none']:.2f} ms/step without, {r['overhead_pct']['default']:+.1f} % with "
                f"Monitor() ({r['repeats']} x {r['steps']} steps)")
    if name == "ablation":
        t = r.get("trials", {})
        done = t.get("complete", 0)
        planned = sum(v for k, v in t.items() if isinstance(v, int))
        return f"{done} of {planned} trials in {_fmt(r.get('wall_s'), '.0f')} s (whole call)"
    return ""


def markdown(results: dict) -> str:
    lines = [f"# gpu_check: {results['device']}", "",
             f"torch {results.get('torch')}, {results['started']}, {results['elapsed_s']:.0f} s in all "
             f"(deadline {results['deadline_s']:.0f} s){'; --quick: the numbers mean nothing' if results['quick'] else ''}.",
             f"Command: `{results['command']}`", "",
             "| section | status | seconds | result |", "| --- | --- | --- | --- |"]
    for name in results["order"]:
        r = results["sections"].get(name)
        if r is None:
            lines.append(f"| {name} | pending | - | |")
            continue
        lines.append(f"| {name} | {r.get('status')} | {_fmt(r.get('seconds'), '.0f')} | "
                     f"{_headline(name, r).replace('|', '/')} |")
    s = results["sections"]
    runs = [(p, s[f"speedrun_{p}"]) for p in ("bf16", "fp16") if "test_acc_mean" in s.get(f"speedrun_{p}", {})]
    if runs:
        lines += ["", "## The fast base, bf16 against fp16", "",
                  "| precision | seeds | test acc (TTA) | sd | train s/run (median) | eval s | build s | compile s | "
                  "skipped fp16 steps |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for p, r in runs:
            skipped = r.get("skipped_steps")
            lines.append(f"| {p} | {r['seeds']} | {100 * r['test_acc_mean']:.2f} % | {100 * r['test_acc_sd']:.2f} | "
                         f"{r['train_s_median']:.3f} | {r['eval_s_median']:.3f} | {r['build_s_median']:.2f} | "
                         f"{r['compile_s']:.1f} | {'-' if skipped is None else sum(skipped)} |")
        lines.append("Accuracies per seed: " + "; ".join(
            f"{p}: " + ", ".join(f"{100 * x['test_acc']:.2f}" for x in r["runs"]) for p, r in runs))
    abl = s.get("ablation", {})
    if abl.get("rows"):
        lines += ["", f"## Ablation ({abl.get('mode')}, {abl.get('seeds')} seeds, {abl.get('workers')} workers)", "",
                  f"| arm | n | {abl.get('metric')} | effect [simultaneous 95% CI] | verdict | train s |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for row in abl["rows"]:
            effect = "reference" if row.get("effect") is None else (
                f"{_fmt(row.get('effect'), '+.4f')} [{_fmt(row.get('low'), '+.4f')}, {_fmt(row.get('high'), '+.4f')}]")
            lines.append(f"| {row.get('label')} | {row.get('n')} | {_fmt(row.get('mean'), '.4f')} | {effect} | "
                         f"{row.get('verdict', '')} | {_fmt(row.get('time'), '.1f')} |")
    tests = s.get("tests", {})
    fails = [f for run in tests.get("runs", []) for f in run.get("failures", [])]
    if fails:
        lines += ["", "## Failed tests", "", *(f"- `{f}`" for f in fails)]
    return "\n".join(lines) + "\n"


def _write(results: dict, out: Path) -> None:
    for name, text in (("gpu_check.json", json.dumps(_clean(results), indent=1, default=str)),
                       ("gpu_check.md", markdown(results))):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out / name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "gpu_check"), help="folder for the JSON and Markdown")
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz", help="the CIFAR-10 JPEG pack")
    ap.add_argument("--quick", action="store_true", help="every section tiny, on the CPU: checks that it runs")
    ap.add_argument("--deadline-s", type=float, default=None,
                    help="seconds after which the running section is stopped and the rest skipped "
                         f"(default 510 on a GPU, {QUICK_BUDGET_S * 3:.0f} with --quick)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"a comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--seeds", type=int, default=None,
                    help=f"speedrun seeds per precision (default {SEEDS}); with --quick (default 2), the ablation's too")
    ap.add_argument("--section", help=argparse.SUPPRESS)  # internal: run one section in this process
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    ap.add_argument("--budget-s", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.seeds is None:
        args.seeds = 2 if args.quick else SEEDS
    if args.section:
        return run_section(args)

    start = time.monotonic()
    order = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in order if s not in SECTIONS]
    if bad:
        raise SystemExit(f"unknown section(s) {bad}; valid: {', '.join(SECTIONS)}")
    import torch

    if not args.quick and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: gpu_check measures a GPU (--quick runs every section tiny on the CPU)")
    data = Path(args.data)
    if not args.quick and any(s.startswith(("speedrun", "ablation")) for s in order) and not data.exists():
        raise SystemExit(f"--data {args.data}: no such file (the CIFAR-10 JPEG pack)")
    args.data = str(data.resolve()) if data.exists() else args.data
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.out = str(out.resolve())
    deadline = args.deadline_s if args.deadline_s is not None else (QUICK_BUDGET_S * 3 if args.quick else 510.0)
    workdir = Path(tempfile.mkdtemp(prefix="gpu_check-"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env["TRICKBAG_CACHE"] = str(workdir / "cache")  # the pack is decoded once, by the first section that reads it
    env["PYTHONUNBUFFERED"] = "1"
    if args.quick:
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # busy CPU machines: threads that wait, sleep
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if not args.quick else "cpu (quick check; not a result)",
        "torch": torch.__version__, "python": sys.version.split()[0], "quick": args.quick,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "deadline_s": deadline, "elapsed_s": 0.0, "order": order, "sections": {},
    }
    _write(results, out)
    try:
        for name in order:
            left = deadline - (time.monotonic() - start)
            if left < (10.0 if args.quick else MIN_START_S[name]):
                results["sections"][name] = {"status": "skipped", "reason": f"deadline: {max(left, 0):.0f} s left"}
            else:
                cap = QUICK_BUDGET_S if args.quick else BUDGET_S[name]
                budget = min(cap, left - GRACE_S) if cap is not None else left - GRACE_S
                print(f"[gpu_check {time.monotonic() - start:5.0f} s] {name} (budget {budget:.0f} s) ...", flush=True)
                try:
                    r = _child(args, name, budget, min(budget + GRACE_S, left), workdir, env)
                except Exception:  # the section's process could not even be run
                    r = {"status": "error", "error": traceback.format_exc(limit=6)}
                results["sections"][name] = r
                print(f"[gpu_check {time.monotonic() - start:5.0f} s] {name}: {r.get('status')}; "
                      f"{_headline(name, r)}", flush=True)
            results["elapsed_s"] = time.monotonic() - start
            _write(results, out)
    finally:
        results["elapsed_s"] = time.monotonic() - start
        _write(results, out)
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(markdown(results))
    print(f"written: {out / 'gpu_check.json'}, {out / 'gpu_check.md'}")
    return 0 if all(r.get("status") == "ok" for r in results["sections"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
