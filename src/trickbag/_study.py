"""Planned trials in an Optuna study on shared storage, each run exactly once (private).

The creator of a study enqueues every planned trial (a "slot") as a WAITING trial; workers
(threads of one command, or the same command started on several machines) claim them with
an atomic WAITING -> RUNNING transition of the storage, so no slot is run twice. Running
trials carry a heartbeat; a trial whose worker died (same host and the process is gone, or
no heartbeat for ``grace`` seconds) is failed and its slot queued again by exactly one
worker (the one whose RUNNING -> FAIL transition succeeded). A finished slot is never run
again: a claimed trial whose slot already completed is discarded.

Atomicity: Optuna's transitions read the trial's state and then write it. On PostgreSQL the
read is ``SELECT ... FOR UPDATE``; SQLite ignores that (and Python's sqlite3 starts the
transaction only at the write), so two processes could both see WAITING and both claim the
trial. Every read-then-write of this module (claiming, recovering, topping up the queue,
creating the schema) therefore runs under :func:`study_lock`: an exclusive ``flock`` on a
file beside the SQLite database (SQLite storage is for one machine), or a PostgreSQL
advisory lock held for the transaction.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import logging
import multiprocessing
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from trickbag._optional import require

__all__: list[str] = []

log = logging.getLogger("trickbag")
HOST = socket.gethostname()


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other URLs and in-memory SQLite)."""
    if not url.startswith("sqlite"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def storage_url(url: str | None, out_dir: Path) -> str:
    """The URL to open: SQLite in the output folder by default; a relative SQLite path (as
    ``ablation.json`` and ``search.json`` store it) is relative to ``out_dir``, so a moved or
    copied folder uses its own database; ``postgresql://`` uses psycopg 3 when installed."""
    if url is None:
        return f"sqlite:///{(Path(out_dir) / 'study.db').resolve()}"
    path = sqlite_path(url)
    if path is not None and not path.is_absolute():
        return f"sqlite:///{(Path(out_dir) / path).resolve()}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        require("psycopg", "postgres", "PostgreSQL storage")
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def user_storage_url(url: str | None, out_dir: Path) -> str:
    """The URL to open for a ``--storage`` given on the command line: a relative SQLite path
    there is relative to the current directory, as a user expects."""
    path = sqlite_path(url) if url is not None else None
    if path is not None and not path.is_absolute():
        url = f"sqlite:///{path.resolve()}"
    return storage_url(url, out_dir)


def portable_url(url: str, out_dir: Path) -> str:
    """How to record ``url`` in the output folder: an SQLite file inside ``out_dir`` becomes a
    path relative to it (``sqlite:///study.db``); other URLs are kept as they are."""
    path = sqlite_path(url)
    if path is not None:
        try:
            return f"sqlite:///{path.resolve().relative_to(Path(out_dir).resolve()).as_posix()}"
        except ValueError:
            pass
    return url


def existing_storage(stored: str, folder: Path) -> str:
    """The URL of the storage an output folder recorded, for reading (reports): relative SQLite
    paths resolve against ``folder``, and an SQLite file that does not exist is an error, never
    a new empty database. An absolute path recorded by an older trickbag is replaced by the
    folder's own database of the same name when the folder has one (a moved or copied folder)."""
    url = storage_url(stored, folder)
    path = sqlite_path(url)
    if path is None:
        return url
    own = Path(folder) / path.name
    if sqlite_path(stored) is not None and sqlite_path(stored).is_absolute() and own.exists() \
            and path.resolve() != own.resolve():
        path, url = own.resolve(), f"sqlite:///{own.resolve()}"
    if not path.exists():
        raise FileNotFoundError(f"{folder}: its study database {path} does not exist (moved or deleted?); "
                                "nothing to report")
    return url


def redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def _reason(exc: BaseException) -> str:
    """The driver's own first line (psycopg, sqlite3) rather than SQLAlchemy's wrapping."""
    inner = getattr(exc, "orig", None) or exc.__cause__ or exc
    text = str(inner).strip() or type(inner).__name__
    return text.splitlines()[0].strip()


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    import fcntl

    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:  # a read-only folder: nobody can write the database there either
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _lock_file(url: str) -> Path | None:
    path = sqlite_path(url)
    return path.parent / f".{path.name}.lock" if path is not None else None


@contextlib.contextmanager
def study_lock(storage, key: str = "") -> Iterator[None]:
    """Exclusive access for a read-then-write on ``storage``: a ``flock`` beside an SQLite
    file (every process of this machine, every thread), a transaction-scoped advisory lock on
    PostgreSQL (every machine); nothing for other back ends."""
    url = str(storage.engine.url) if hasattr(storage, "engine") else str(storage)
    lock_file = _lock_file(url)
    if lock_file is not None:
        with _flock(lock_file):
            yield
    elif url.startswith("postgresql"):
        number = int.from_bytes(hashlib.sha256(f"trickbag:{key}".encode()).digest()[:8], "big", signed=True)
        with storage.engine.begin() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({number})")
            yield
    else:
        yield


_RACE_MESSAGES = ("already exists", "duplicate key", "UNIQUE constraint failed", "database is locked")


def open_storage(url: str):
    """Open (creating if needed) Optuna's RDB storage at ``url``. Failures (an unreachable
    server, a corrupt or foreign SQLite file, a schema of another Optuna version) become one
    ``ValueError`` sentence naming the storage."""
    optuna = require("optuna", "search", "trial storage")
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # trickbag prints its own progress
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs = {"connect_args": {"timeout": 120}}  # several processes may write one file
        path = sqlite_path(url)
        if path is not None and not path.parent.is_dir():
            raise FileNotFoundError(f"the folder of the SQLite storage {path} does not exist")
    else:
        kwargs = {"pool_pre_ping": True}
    # Workers started together on a fresh database race to create Optuna's schema (the loser
    # saw "UNIQUE constraint failed: alembic_version.version_num" on SQLite): on SQLite the
    # creation runs under the file lock; elsewhere the loser tries again after a short wait.
    for attempt in range(6):
        try:
            lock_file = _lock_file(url)
            with _flock(lock_file) if lock_file is not None else contextlib.nullcontext():
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except ImportError:
            raise
        except Exception as exc:
            if attempt < 5 and any(m in str(exc) for m in _RACE_MESSAGES):
                time.sleep(random.uniform(0.2, 1.0))
                continue
            reason = _reason(exc)
            hint = ""
            if "file is not a database" in reason or "malformed" in reason:
                hint = " (a corrupt or foreign file: move it away, or use another --out or --storage)"
            elif "connect" in reason.lower() or "refused" in reason.lower() or "resolve" in reason.lower():
                hint = " (is the server running and the URL right?)"
            raise ValueError(f"cannot open the trial storage {redacted(url)}: {reason}{hint}") from exc
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
    def open(self, *, create: bool = True):
        """Create the study and queue its slots, or join it (queueing slots that lost their
        trial). With ``create=False`` (reports) a missing study is an error and nothing is
        queued."""
        optuna = self.optuna
        if not create:
            try:
                self.study = optuna.load_study(storage=self.storage, study_name=self.name)
            except KeyError:
                raise ValueError(f"the storage {redacted(str(self.storage.engine.url))} holds no study "
                                 f"{self.name!r}; nothing to report") from None
            self.study_id = self.storage.get_study_id_from_name(self.name)
            return self.study
        try:
            self.study = optuna.create_study(storage=self.storage, study_name=self.name, direction=self.direction)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            self.study = optuna.load_study(storage=self.storage, study_name=self.name)
            created = False
        self.study_id = self.storage.get_study_id_from_name(self.name)
        if created:
            with study_lock(self.storage, self.name):  # joiners top up only once the plan is queued
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
        with study_lock(self.storage, self.name):  # two joiners must not both queue a missing slot
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
                out.append({k: v for k, v in t.user_attrs.items() if k in ("slot", "task", "arm", "label", "seed", "params")})
        return out

    # ---- progress --------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        S = self.optuna.trial.TrialState
        done = {t.user_attrs.get("slot") for t in self._trials((S.COMPLETE, S.PRUNED))}
        running = {t.user_attrs.get("slot") for t in self._trials((S.RUNNING,))}
        planned = {s["slot"] for s in self.slots}
        return {"planned": len(planned), "done": len(done & planned), "running": len(running & planned)}

    def pending(self) -> int:
        """How many trials of the study wait or run (on any worker)."""
        S = self.optuna.trial.TrialState
        return len(self._trials((S.WAITING, S.RUNNING)))

    @contextlib.contextmanager
    def planning(self) -> Iterator[int]:
        """The next look of an adaptive design: hold the study lock, read every process's slots
        afresh and yield how many trials still wait or run (plan nothing then: run or wait for
        them first). Two processes that finish a round together thus queue the next one once."""
        with study_lock(self.storage, self.name):
            self.slots = self.stored_slots()
            yield self.pending()

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
                with study_lock(self.storage, self.name):  # read WAITING and write RUNNING as one step
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

    def finish(self, trial, value: float, attrs: dict[str, Any], *, pruned: bool = False) -> bool:
        """Record a claimed trial's result; False (and a warning) when another worker had
        already failed it as lost (its slot was queued again and runs there)."""
        tid = self._tid(trial.number)
        S = self.optuna.trial.TrialState
        try:
            for k, v in attrs.items():
                self.storage.set_trial_user_attr(tid, k, v)
            if pruned:
                values = [float(value)] if value is not None and value == value else None
                self.storage.set_trial_state_values(tid, state=S.PRUNED, values=values)
            elif value is None or value != value:
                self.storage.set_trial_user_attr(tid, "failure", attrs.get("failure", "the metric is not finite"))
                self.storage.set_trial_state_values(tid, state=S.FAIL)
            else:
                self.storage.set_trial_state_values(tid, state=S.COMPLETE, values=[float(value)])
        except self.optuna.exceptions.UpdateFinishedTrialError:
            log.warning("trial %d was failed as lost by another worker before it finished here; its result is "
                        "dropped (the slot was queued again)", trial.number)
            return False
        return True

    def fail(self, trial, reason: str) -> None:
        tid = self._tid(trial.number)
        try:
            self.storage.set_trial_user_attr(tid, "failure", reason[-2000:])
            self.storage.set_trial_state_values(tid, state=self.optuna.trial.TrialState.FAIL)
        except self.optuna.exceptions.UpdateFinishedTrialError:
            pass  # already finished (or failed by another worker)

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
                with study_lock(self.storage, self.name):  # one recoverer queues the slot again
                    self.storage.set_trial_user_attr(tid, "failure", f"worker {worker} stopped (killed or lost)")
                    if not self.storage.set_trial_state_values(tid, state=S.FAIL):
                        continue
                    slot = {k: v for k, v in t.user_attrs.items() if k not in ("worker", "heartbeat", "failure")}
                    self.study.enqueue_trial(slot.get("params", {}), user_attrs=slot)
            except self.optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker recovered it (or it finished after all)
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


def _under_main_guard(tree: Any, line: int) -> bool:
    """Whether ``line`` of a module's AST lies inside ``if __name__ == "__main__":``."""
    import ast

    for node in ast.walk(tree):
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and node.body
                and node.body[0].lineno <= line <= (node.body[-1].end_lineno or node.body[-1].lineno)):
            names = [node.test.left, *node.test.comparators]
            texts = {n.id if isinstance(n, ast.Name) else getattr(n, "value", None) for n in names}
            if texts == {"__name__", "__main__"}:
                return True
    return False


def unguarded_main_call() -> str | None:
    """``"script.py:12"`` when the running script reached this call from its module level
    outside ``if __name__ == "__main__":``: worker processes (spawned: each re-imports the script,
    as every start method but fork does) would run that line again and fail. None otherwise
    (guarded, an interactive session, a script that cannot be read, a package's ``__main__``
    module run with ``python -m``, which multiprocessing does not re-import)."""
    import ast

    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and (spec.name == "__main__" or spec.name.endswith(".__main__")):
        return None
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
            path = frame.f_code.co_filename
            try:
                tree = ast.parse(Path(path).read_text(encoding="utf-8"))
            except (OSError, SyntaxError, ValueError):
                return None
            return None if _under_main_guard(tree, frame.f_lineno) else f"{Path(path).name}:{frame.f_lineno}"
        frame = frame.f_back
    return None


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
    where = unguarded_main_call() if workers > 1 else None
    if where is not None:  # worker processes would re-run the script: run the trials here instead
        print(f"note: {where} starts {workers} worker processes from module level; each would re-import the "
              f"script and run it again, so the trials run one at a time in this process. To run {workers} at "
              'once, put the call under `if __name__ == "__main__":`.', file=sys.stderr, flush=True)
        workers = 1
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


