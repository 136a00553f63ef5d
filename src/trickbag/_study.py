"""Planned trials in an Optuna study on shared storage, each run exactly once (private).

The creator of a study enqueues every planned trial (a "slot") as a WAITING trial; workers
(threads of one command, or the same command started on several machines) claim them with
an atomic WAITING -> RUNNING transition of the storage, so no slot is run twice. Running
trials carry a heartbeat; a trial whose worker died (same host and the process is gone, or
no heartbeat for ``grace`` seconds) is failed and its slot queued again by exactly one
worker (the one whose RUNNING -> FAIL transition succeeded). A finished slot is never run
again: a claimed trial whose slot already completed is discarded.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import multiprocessing
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from trickbag._optional import require

__all__: list[str] = []

log = logging.getLogger("trickbag")
HOST = socket.gethostname()


def storage_url(url: str | None, out_dir: Path) -> str:
    """SQLite in the output folder by default; ``postgresql://`` uses psycopg 3 when installed."""
    if url is None:
        return f"sqlite:///{(out_dir / 'study.db').resolve()}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        require("psycopg", "postgres", "PostgreSQL storage")
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def open_storage(url: str):
    optuna = require("optuna", "search", "trial storage")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # trickbag prints its own progress
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 120}}  # several processes may write one file
    else:
        kwargs = {"pool_pre_ping": True}
    # Workers started together on a fresh database race to create Optuna's schema; the loser
    # sees "already exists". Try again after a short random wait: the schema is then there.
    for attempt in range(6):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as exc:
            if attempt == 5 or "already exists" not in str(exc) and "duplicate key" not in str(exc):
                raise
            time.sleep(random.uniform(0.2, 1.0))
    raise AssertionError("unreachable")  # pragma: no cover


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PlannedStudy:
    """An Optuna study whose trials are a fixed list of slots (see the module docstring)."""

    def __init__(self, storage, name: str, direction: str, slots: list[dict[str, Any]], plan_id: str,
                 *, grace: float = 120.0):
        self.optuna = require("optuna", "search", "trial storage")
        self.storage, self.name, self.direction = storage, name, direction
        self.slots = slots
        self.plan_id = plan_id
        self.grace = grace
        self.worker = f"{HOST}:{os.getpid()}"

    # ---- creation -------------------------------------------------------------------------
    def open(self):
        optuna = self.optuna
        try:
            self.study = optuna.create_study(storage=self.storage, study_name=self.name, direction=self.direction)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            self.study = optuna.load_study(storage=self.storage, study_name=self.name)
            created = False
        self.study_id = self.storage.get_study_id_from_name(self.name)
        if created:
            self.study.set_user_attr("plan_id", self.plan_id)
            for slot in self.slots:
                self.study.enqueue_trial(slot.get("params", {}), user_attrs=slot)
            self.study.set_user_attr("planned", len(self.slots))
        else:
            deadline = time.time() + 60
            while "planned" not in self.study.user_attrs and time.time() < deadline:
                time.sleep(0.5)  # another worker is enqueuing the plan
                self.study = optuna.load_study(storage=self.storage, study_name=self.name)
            other = self.study.user_attrs.get("plan_id")
            if other is not None and other != self.plan_id:
                raise ValueError(f"study {self.name!r} holds a different plan; use another --out or study name")
            self._top_up()
        return self.study

    def _trials(self, states=None):
        return self.storage.get_all_trials(self.study_id, deepcopy=False, states=states)

    def _top_up(self) -> None:
        """Queue slots that have no waiting, running or finished trial (a creator that died
        while enqueuing, or trials failed by a crash)."""
        S = self.optuna.trial.TrialState
        present = {t.user_attrs.get("slot") for t in self._trials((S.WAITING, S.RUNNING, S.COMPLETE, S.PRUNED))}
        for slot in self.slots:
            if slot["slot"] not in present:
                self.study.enqueue_trial(slot.get("params", {}), user_attrs=slot)

    def add_slots(self, slots: list[dict[str, Any]]) -> int:
        """Plan more slots (the next round of an adaptive design): each one that no trial of the
        study holds yet, in any state, is queued; returns how many were."""
        present = {t.user_attrs.get("slot") for t in self._trials()}
        known = {s["slot"] for s in self.slots}
        queued = 0
        for slot in slots:
            if slot["slot"] not in known:
                self.slots.append(slot)
                known.add(slot["slot"])
            if slot["slot"] not in present:
                self.study.enqueue_trial(slot.get("params", {}), user_attrs=slot)
                present.add(slot["slot"])
                queued += 1
        return queued

    def stored_slots(self) -> list[dict[str, Any]]:
        """The slot of every trial the study holds, once each, in the order first queued."""
        seen, out = set(), []
        for t in sorted(self._trials(), key=lambda t: t.number):
            slot = t.user_attrs.get("slot")
            if slot is not None and slot not in seen:
                seen.add(slot)
                out.append({k: v for k, v in t.user_attrs.items() if k in ("slot", "arm", "label", "seed", "params")})
        return out

    # ---- progress --------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        S = self.optuna.trial.TrialState
        done = {t.user_attrs.get("slot") for t in self._trials((S.COMPLETE, S.PRUNED))}
        running = {t.user_attrs.get("slot") for t in self._trials((S.RUNNING,))}
        planned = {s["slot"] for s in self.slots}
        return {"planned": len(planned), "done": len(done & planned), "running": len(running & planned)}

    def completed(self) -> list[Any]:
        S = self.optuna.trial.TrialState
        seen, out = set(), []
        for t in sorted(self._trials((S.COMPLETE,)), key=lambda t: t.number):
            slot = t.user_attrs.get("slot")
            if slot not in seen:
                seen.add(slot)
                out.append(t)
        return out

    # ---- claiming, finishing, recovering ------------------------------------------------------
    def _tid(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def claim(self) -> Any | None:
        """Take one waiting slot (atomically) and return its FrozenTrial, or None."""
        S = self.optuna.trial.TrialState
        for t in self._trials((S.WAITING,)):
            tid = self._tid(t.number)
            try:
                if not self.storage.set_trial_state_values(tid, state=S.RUNNING):
                    continue
            except self.optuna.exceptions.UpdateFinishedTrialError:
                continue
            slot = t.user_attrs.get("slot")
            if any(o.user_attrs.get("slot") == slot for o in self._trials((S.COMPLETE, S.PRUNED))):
                self.storage.set_trial_user_attr(tid, "discarded", "its slot had already completed")
                self.storage.set_trial_state_values(tid, state=S.FAIL)
                continue
            self.storage.set_trial_user_attr(tid, "worker", self.worker)
            self.beat(tid)
            return t
        return None

    def beat(self, tid: int) -> None:
        self.storage.set_trial_user_attr(tid, "heartbeat", time.time())

    def finish(self, trial, value: float, attrs: dict[str, Any], *, pruned: bool = False) -> None:
        tid = self._tid(trial.number)
        for k, v in attrs.items():
            self.storage.set_trial_user_attr(tid, k, v)
        S = self.optuna.trial.TrialState
        if pruned:
            values = [float(value)] if value is not None and value == value else None
            self.storage.set_trial_state_values(tid, state=S.PRUNED, values=values)
        elif value is None or value != value:
            self.storage.set_trial_user_attr(tid, "failure", attrs.get("failure", "the metric is not finite"))
            self.storage.set_trial_state_values(tid, state=S.FAIL)
        else:
            self.storage.set_trial_state_values(tid, state=S.COMPLETE, values=[float(value)])

    def fail(self, trial, reason: str) -> None:
        tid = self._tid(trial.number)
        self.storage.set_trial_user_attr(tid, "failure", reason[-2000:])
        self.storage.set_trial_state_values(tid, state=self.optuna.trial.TrialState.FAIL)

    def recover(self) -> int:
        """Fail the running trials of dead workers and queue their slots again; returns how many."""
        S = self.optuna.trial.TrialState
        now, recovered = time.time(), 0
        for t in self._trials((S.RUNNING,)):
            worker = str(t.user_attrs.get("worker", ""))
            host, _, pid = worker.rpartition(":")
            beat = t.user_attrs.get("heartbeat")
            if beat is None:
                beat = t.datetime_start.timestamp() if t.datetime_start else now
            gone = host == HOST and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid))
            if not (gone or now - float(beat) > self.grace):
                continue
            tid = self._tid(t.number)
            try:  # the reason first (finished trials take no attributes), then the atomic transition
                self.storage.set_trial_user_attr(tid, "failure", f"worker {worker} stopped (killed or lost)")
                if not self.storage.set_trial_state_values(tid, state=S.FAIL):
                    continue
            except self.optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker recovered it (or it finished after all)
            slot = {k: v for k, v in t.user_attrs.items() if k not in ("worker", "heartbeat", "failure")}
            self.study.enqueue_trial(slot.get("params", {}), user_attrs=slot)
            recovered += 1
        return recovered

    @contextlib.contextmanager
    def heartbeats(self, interval: float, running: dict[int, Any]) -> Iterator[None]:
        """Beat for every trial in ``running`` (trial number -> anything) from a thread."""
        stop = threading.Event()

        def loop():
            while not stop.wait(interval):
                for number in list(running):
                    try:
                        self.beat(self._tid(number))
                    except Exception as exc:  # storage hiccups must not kill the worker
                        log.debug("heartbeat failed: %s", exc)

        thread = threading.Thread(target=loop, name="trickbag-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)


def run_slots(
    planned: PlannedStudy,
    *,
    workers: int,
    prepare: Callable[[Any], Any],
    execute: Callable[[Any], dict[str, Any]],
    finish: Callable[[Any, Any, dict[str, Any]], None],
    threads: int | None = None,
    interval: float = 10.0,
) -> None:
    """Claim and run the study's waiting slots until none is left anywhere.

    ``prepare(trial)`` turns a claimed trial into a picklable payload (it may also return
    ``(payload, context)``: the context goes to ``finish``); ``execute(payload)`` trains (in
    this process for one worker, in a spawned pool of ``workers`` processes otherwise) and
    returns a result dict; ``finish(trial, context, result)`` records it. Heartbeats cover every
    trial in flight; dead workers' trials are re-queued; when this process has nothing left to
    claim it waits for other workers' trials (which may still fail and come back).
    """
    running: dict[int, Any] = {}
    futures: dict[cf.Future, tuple[Any, Any]] = {}
    pool = None
    if workers > 1:
        import torch

        threads = threads or max(1, torch.get_num_threads() // workers)
        pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                      initializer=child_init, initargs=(threads,))
    try:
        with planned.heartbeats(interval, running):
            while True:
                planned.recover()
                while len(running) < workers:
                    trial = planned.claim()
                    if trial is None:
                        break
                    running[trial.number] = trial
                    prepared = prepare(trial)
                    payload, context = prepared if isinstance(prepared, tuple) else (prepared, None)
                    if pool is None:
                        finish(trial, context, execute(payload))
                        running.pop(trial.number)
                    else:
                        futures[pool.submit(execute, payload)] = (trial, context)
                if futures:
                    done, _ = cf.wait(futures, timeout=interval, return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        trial, context = futures.pop(fut)
                        running.pop(trial.number, None)
                        try:
                            result = fut.result()
                        except Exception as exc:  # a worker process died
                            result = {"failure": f"worker process failed: {exc!r}"}
                        finish(trial, context, result)
                    continue
                if running:
                    continue
                if planned.counts()["running"] == 0:
                    break
                time.sleep(min(interval, 5.0))  # trials of other workers: wait, recover if they die
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def child_init(threads: int | None) -> None:
    """Worker-process setup: die with the parent (Linux), and a fixed thread count."""
    if os.name == "posix" and Path("/proc").exists():
        with contextlib.suppress(Exception):
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if threads:
        import torch

        torch.set_num_threads(threads)


