"""The Trainer: a short, fast training loop that every trick plugs into through callbacks."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trickbag._atomic import kill_point
from trickbag._validate import check_choice, check_positive_int
from trickbag.train._runtime import _deterministic, _has_step_pre_hooks, _resolve_device, _to, seed_everything
from trickbag.train.callbacks.base import Callback, check_compatible
from trickbag.train.checkpoint import load_checkpoint, rng_state, save_atomic, set_rng_state
from trickbag.train.distributed import all_reduce_sum, broadcast_buffers, init_distributed
from trickbag.train.evaluation import evaluate, predict
from trickbag.train.events import Event
from trickbag.train.state import TrainState

__all__ = ["Trainer", "seed_everything"]

Metric = Callable[[Tensor, Tensor], Tensor]
CHECKPOINT_FORMAT = "trickbag-checkpoint-1"


class Trainer:
    """Train any ``nn.Module`` on batches of ``(inputs, targets)``.

    Args:
        model: the module to train.
        train_data: an iterable of ``(inputs, targets)`` batches with a length (a
            :class:`~trickbag.data.DeviceLoader`, a torch ``DataLoader``, a list ...).
        val_data: batches evaluated at the end of every epoch (metrics ``val_loss``,
            ``val_acc``, ``val_top5`` and custom ones). Targets may be a dict ``{task: tensor}``
            for a multi-task model whose outputs are one too: each task then gets
            ``val_<task>_acc`` (and ``val_<task>_loss`` from a loss with ``task_losses``), and
            ``val_acc`` is their mean.
        loss: ``loss(outputs, targets)``; default cross-entropy.
        optimizer: a ``torch.optim.Optimizer`` over the model's parameters, a function
            ``model -> optimizer`` (called after the model moved to its device), or a dict of
            :func:`~trickbag.optim.create_optimizer` arguments. Default AdamW, lr 1e-3.
        schedule: a ``step -> multiplier`` schedule (stepped once per update) or a torch
            LR scheduler.
        callbacks: loop tricks, run in list order.
        epochs, steps: how long to train (``steps`` caps ``epochs``; one is needed).
        device: ``"auto"`` (CUDA when available, this rank's GPU under torchrun), or a device.
        precision: ``"fp32"``, ``"bf16"`` (autocast) or ``"fp16"`` (autocast and a gradient scaler).
        compile: ``torch.compile`` the model.
        channels_last: channels-last memory format for the model and image batches.
        grad_accum_steps: batches per optimizer step.
        seed: seeds Python, NumPy and torch at the start of ``fit``.
        run_dir: where checkpoints and logs go (used by those callbacks).
        metrics: extra evaluation metrics, ``name -> fn(outputs, targets) -> batch mean``.
        track_train_acc: also accumulate training accuracy (``train_acc``).
        eval_every_steps: also evaluate ``val_data`` every this many updates within an epoch
            (EVAL_START / EVAL_END fire around it; the values go into ``state.metrics``).
        deterministic: bitwise-repeatable training on GPUs too, for the length of ``fit()``:
            ``torch.use_deterministic_algorithms(True)``, cuDNN's benchmark off and its
            deterministic kernels on, and ``CUBLAS_WORKSPACE_CONFIG`` set (slower; an operation
            with no deterministic kernel raises, naming itself). The previous settings return
            when ``fit()`` ends.
        batch_keys: for batches that are mappings (as Hugging Face datasets give), the keys of
            the inputs and of the targets. Tuple batches are ``(inputs, targets)``.

    Under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in DistributedDataParallel,
    loaders with a ``rank`` shard their data, and only rank 0 logs and checkpoints. The trainer
    joins the process group on its first ``fit``; end such a script with
    ``trickbag.train.distributed.shutdown()`` once every rank is done (``trickbag train`` does).

    Example:
        >>> import torch
        >>> from trickbag.data import DeviceLoader, synthetic
        >>> data = synthetic(num_train=256, num_test=64, shape=(8,), num_classes=2)
        >>> model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        >>> trainer = Trainer(model, DeviceLoader(data.train, 32), val_data=DeviceLoader(data.test, 64, shuffle=False),
        ...                   optimizer={"name": "adamw", "lr": 1e-2}, epochs=3, progress=False)
        >>> history = trainer.fit()
        >>> history[-1]["val_acc"] > 0.9
        True
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Iterable[Any],
        *,
        val_data: Iterable[Any] | None = None,
        loss: Callable[[Tensor, Tensor], Tensor] | None = None,
        optimizer: torch.optim.Optimizer | Callable[[nn.Module], torch.optim.Optimizer] | Mapping[str, Any] | None = None,
        schedule: Callable[[int], float] | torch.optim.lr_scheduler.LRScheduler | None = None,
        callbacks: Sequence[Callback] = (),
        epochs: int | None = None,
        steps: int | None = None,
        device: str | torch.device = "auto",
        precision: str = "fp32",
        compile: bool = False,
        channels_last: bool = False,
        grad_accum_steps: int = 1,
        seed: int = 0,
        run_dir: str | Path | None = None,
        metrics: Mapping[str, Metric] | None = None,
        track_train_acc: bool = False,
        progress: bool = True,
        eval_every_steps: int | None = None,
        deterministic: bool = False,
        batch_keys: tuple[str, str] = ("input", "label"),
    ):
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if epochs is None and steps is None:
            raise ValueError("give epochs or steps (how long to train)")
        if epochs is not None:
            check_positive_int("epochs", epochs)
        if steps is not None:
            check_positive_int("steps", steps)
        check_choice("precision", precision, ("fp32", "bf16", "fp16"))
        check_positive_int("grad_accum_steps", grad_accum_steps)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise ValueError(f"callbacks must be trickbag Callback instances, got {cb!r}")
        self.model = model
        self.train_data = train_data
        self.val_data = val_data
        self.loss_fn = loss or F.cross_entropy
        self.optimizer_spec = optimizer
        self.epochs, self.steps = epochs, steps
        self.device = _resolve_device(device)
        self.precision = precision
        self.compile = compile
        self.channels_last = channels_last
        self.grad_accum_steps = grad_accum_steps
        self.seed = seed
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.extra_metrics = dict(metrics or {})
        self.track_train_acc = track_train_acc
        if eval_every_steps is not None:
            check_positive_int("eval_every_steps", eval_every_steps)
        self.eval_every_steps = eval_every_steps
        self.deterministic = bool(deterministic)
        if (not isinstance(batch_keys, (tuple, list)) or len(batch_keys) != 2
                or not all(isinstance(k, str) for k in batch_keys)):
            raise ValueError(f"batch_keys must be two keys (inputs, targets), got {batch_keys!r}")
        self.batch_keys = tuple(batch_keys)
        self.callbacks: list[Callback] = list(callbacks)
        if schedule is not None:
            from trickbag.train.callbacks import LRSchedule

            self.callbacks.insert(0, LRSchedule(schedule))
        if progress and not any(type(c).__name__ == "ProgressBar" for c in self.callbacks):
            from trickbag.train.callbacks import ProgressBar

            self.callbacks.append(ProgressBar())
        self.state: TrainState | None = None
        self._epoch_loss: Tensor | None = None
        self._epoch_correct: Tensor | None = None
        self._epoch_batches = 0
        self._epoch_samples = 0
        self._fit_done = False  # fit() ran to its end in this process: a second call returns at once
        self._in_epoch_end = False
        self._deferred: list[Path] = []  # checkpoints asked for during EPOCH_END
        self.previous_fit_time = 0.0  # seconds spent in fit() before the checkpoint this run resumed from
        self._fit_started: float | None = None

    # ---- setup ---------------------------------------------------------------------------
    def _build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        spec = self.optimizer_spec
        if spec is None:
            return torch.optim.AdamW(model.parameters(), lr=1e-3)
        if isinstance(spec, torch.optim.Optimizer):
            return spec
        if isinstance(spec, Mapping):
            from trickbag.optim import create_optimizer

            return create_optimizer(model, **dict(spec))
        if callable(spec):
            opt = spec(model)
            if not isinstance(opt, torch.optim.Optimizer):
                raise ValueError(f"the optimizer factory returned {type(opt).__name__}, not an Optimizer")
            return opt
        raise ValueError(f"optimizer must be an Optimizer, a function model -> Optimizer or a dict, got {spec!r}")

    def _prepare(self) -> TrainState:
        if self.state is not None:
            return self.state
        rank, size = init_distributed(self.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        raw = self.model.to(self.device)
        if self.channels_last:
            raw = raw.to(memory_format=torch.channels_last)
        for data in (self.train_data, self.val_data):
            if data is not None and hasattr(data, "device") and torch.device(data.device) != self.device:
                if not (torch.device(data.device).type == self.device.type == "cuda"):
                    raise ValueError(f"a loader keeps its data on {data.device} but the trainer runs on {self.device}")
            if data is not None and self.channels_last and hasattr(data, "channels_last"):
                data.channels_last = True
        optimizer = self._build_optimizer(raw)
        model: nn.Module = raw
        if size > 1:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(raw, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.compile:
            model = torch.compile(model)
        try:
            per_epoch = len(self.train_data) // self.grad_accum_steps  # type: ignore[arg-type]
        except TypeError:
            per_epoch = 0
        if per_epoch == 0 and self.steps is None:
            raise ValueError("train_data has no length (or fewer batches than grad_accum_steps): give steps=")
        total = self.steps if self.epochs is None else self.epochs * per_epoch
        if self.steps is not None:
            total = min(total, self.steps)
        epochs = self.epochs if self.epochs is not None else math.ceil(total / per_epoch) if per_epoch else 1
        scaler = None
        if self.precision == "fp16":
            scaler = torch.amp.GradScaler(self.device.type)
        self.state = TrainState(
            model=model, raw_model=raw, optimizer=optimizer, criterion=self.loss_fn, eval_criterion=self.loss_fn,
            device=self.device, trainer=self, train_data=self.train_data, val_data=self.val_data,
            precision=self.precision, scaler=scaler, run_dir=self.run_dir, rank=rank, world_size=size,
            seed=self.seed, grad_accum_steps=self.grad_accum_steps, steps_per_epoch=per_epoch or total,
            total_steps=total, epochs=epochs,
        )
        self._events = {
            event: [getattr(cb, event.method) for cb in self.callbacks
                    if getattr(type(cb), event.method) is not getattr(Callback, event.method)]
            for event in Event
        }
        self._autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        seed_everything(self.seed)
        return self.state

    def _fire(self, event: Event) -> None:
        for fn in self._events[event]:
            fn(self.state)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The mixed-precision context of this run (a no-op in fp32)."""
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._autocast_dtype)

    def compute_loss(self, outputs: Tensor, state: TrainState) -> Tensor:
        """The criterion on the batch; with ``state.mix`` set, the mixed loss."""
        crit = state.criterion
        m = state.mix
        if m is not None:
            return m.lam * crit(outputs, m.targets_a) + (1 - m.lam) * crit(outputs, m.targets_b)
        return crit(outputs, state.targets)

    def unpack(self, batch: Any) -> tuple[Any, Any]:
        """``(inputs, targets)`` of a batch: a pair as it is, a mapping by ``batch_keys``."""
        if isinstance(batch, Mapping):
            k_in, k_out = self.batch_keys
            missing = [k for k in (k_in, k_out) if k not in batch]
            if missing:
                raise ValueError(f"a batch has keys {sorted(batch)}, not {missing}; name its inputs and targets with "
                                 f"Trainer(batch_keys=(inputs, targets)) or data.batch_keys in a config")
            return batch[k_in], batch[k_out]
        x, y = batch
        return x, y

    def backward(self, loss: Tensor) -> None:
        """Back-propagate ``loss`` as the loop does (accumulation scaling, fp16 scaler)."""
        if self.grad_accum_steps > 1:
            loss = loss / self.grad_accum_steps
        if self.state.scaler is not None:
            loss = self.state.scaler.scale(loss)
        loss.backward()

    # ---- the loop ------------------------------------------------------------------------
    def fit(self) -> list[dict[str, Any]]:
        """Train; returns the history (one dict of metrics per epoch).

        After :meth:`load_checkpoint` it continues where the checkpoint was written: inside an
        epoch (that epoch is finished, including its evaluation), or at the start of the next
        one. A checkpoint of a finished run trains nothing but still runs FIT_START and
        FIT_END, so the end-of-run work (averaged weights, restored best weights) is redone as
        the uninterrupted run did it. A second ``fit()`` of the same trainer returns at once.
        """
        s = self._prepare()
        check_compatible(self.callbacks, criterion=s.criterion)
        if self._fit_done:
            return s.history
        self._fit_started = time.perf_counter()
        with _deterministic(self.deterministic):
            self._fire(Event.FIT_START)
            # An epoch in progress (resumed mid-epoch, even at the last step) is always completed.
            while s.batch_index > 0 or (s.epoch < s.epochs and s.step < s.total_steps and not s.stop_training):
                self._train_epoch(s)
                self._end_epoch(s)
            self._fire(Event.FIT_END)
        self._fit_done = True
        return s.history

    @property
    def fit_time(self) -> float:
        """Seconds spent in ``fit()``, summed over this process and the runs it resumed."""
        now = time.perf_counter() - self._fit_started if self._fit_started is not None else 0.0
        return self.previous_fit_time + now

    def _batches(self, s: TrainState):
        data = self.train_data
        if hasattr(data, "set_epoch"):
            data.set_epoch(s.epoch)
        it = iter(data)
        if not hasattr(data, "state_dict"):  # a plain iterable: skip what a resumed run already took
            for _ in range(s.batch_index):
                next(it, None)
        return it

    def _train_epoch(self, s: TrainState) -> None:
        if s.batch_index == 0 or self._epoch_loss is None:
            self._epoch_loss = torch.zeros((), device=self.device)
            self._epoch_correct = torch.zeros((), device=self.device, dtype=torch.long)
            self._epoch_batches = self._epoch_samples = 0
            self._epoch_start = time.perf_counter()
        self._fire(Event.EPOCH_START)
        s.model.train()
        it = self._batches(s)
        ev, opt, scaler, accum = self._events, s.optimizer, s.scaler, self.grad_accum_steps
        ddp = hasattr(s.model, "no_sync")
        device = self.device
        # GradScaler.step does not unscale for fused optimizers (their kernels do it), so step
        # pre-hooks (clipping, noise, centralisation) would see gradients times the scale.
        unscale_first = scaler is not None and _has_step_pre_hooks(opt)
        while s.step < s.total_steps and not s.stop_training:
            got = 0
            for micro in range(accum):
                batch = next(it, None)
                if batch is None:
                    break
                got += 1
                x, y = self.unpack(batch)
                if x.device != device:
                    x, y = x.to(device, non_blocking=True), _to(y, device)
                s.micro_batch, s.inputs, s.targets, s.mix = micro, x, y, None
                for fn in ev[Event.BATCH_START]:
                    fn(s)
                sync = s.model.no_sync() if ddp and micro < accum - 1 else contextlib.nullcontext()
                with sync:
                    with self.autocast():
                        s.outputs = s.model(s.inputs)
                    for fn in ev[Event.AFTER_FORWARD]:
                        fn(s)
                    with self.autocast():
                        s.loss = self.compute_loss(s.outputs, s)
                    data_loss = s.loss.detach()
                    for fn in ev[Event.AFTER_LOSS]:
                        fn(s)
                    for fn in ev[Event.BEFORE_BACKWARD]:
                        fn(s)
                    self.backward(s.loss)
                for fn in ev[Event.AFTER_BACKWARD]:
                    fn(s)
                self._epoch_loss += data_loss.float()
                if self.track_train_acc and s.mix is None and isinstance(s.targets, Tensor) and s.targets.dim() == 1:
                    self._epoch_correct += (s.outputs.argmax(1) == s.targets).sum()
                self._epoch_batches += 1
                self._epoch_samples += x.shape[0]
                s.batch_index += 1
            if got < accum:  # the epoch ran out mid-accumulation: drop the partial gradients
                opt.zero_grad(set_to_none=True)
                break
            if s.skip_step:
                s.skip_step = False
                opt.zero_grad(set_to_none=True)
                continue
            if scaler is not None:
                if unscale_first:
                    scaler.unscale_(opt)
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            opt.zero_grad(set_to_none=True)
            s.step += 1
            for fn in ev[Event.STEP_END]:
                fn(s)
            k = self.eval_every_steps
            if k and self.val_data is not None and s.step % k == 0 and s.batch_index < len(self.train_data):
                self._fire(Event.EVAL_START)
                s.metrics.update(self.evaluate(self.val_data, prefix="val"))
                self._fire(Event.EVAL_END)

    def _end_epoch(self, s: TrainState) -> None:
        seen = max(self._epoch_batches, 1)
        elapsed = time.perf_counter() - self._epoch_start
        loss = all_reduce_sum(self._epoch_loss.clone()) / s.world_size
        m: dict[str, Any] = {"epoch": s.epoch + 1, "step": s.step, "lr": s.lr, "train_loss": loss.item() / seen}
        if self.track_train_acc and self._epoch_samples:
            m["train_acc"] = self._epoch_correct.item() / self._epoch_samples
        m["epoch_time"] = elapsed
        m["samples_per_sec"] = self._epoch_samples * s.world_size / max(elapsed, 1e-9)
        s.samples_seen += self._epoch_samples
        s.metrics = m
        broadcast_buffers(s.raw_model)  # every rank evaluates (and ends with) rank 0's statistics
        if self.val_data is not None:
            self._fire(Event.EVAL_START)
            m.update(self.evaluate(self.val_data, prefix="val"))
            self._fire(Event.EVAL_END)
        s.history.append(dict(m))
        self._in_epoch_end, self._deferred = True, []
        try:
            self._fire(Event.EPOCH_END)
        finally:
            self._in_epoch_end = False
        s.history[-1] = dict(s.metrics)  # keep what EPOCH_END callbacks added
        s.epoch += 1
        s.batch_index = 0
        self._epoch_loss = None
        # Checkpoints asked for at EPOCH_END are written now that the epoch is complete: every
        # EPOCH_END callback has run and the counters point at the next epoch, as the loader
        # (which has finished this epoch) does. A resume then starts the next epoch.
        for path in self._deferred:
            self._write_checkpoint(path)
        self._deferred = []

    # ---- evaluation (the code lives in trickbag.train.evaluation) ---------------------------
    def evaluate(
        self, data: Iterable[Any], *, prefix: str = "val", forward: Callable[[nn.Module, Tensor], Tensor] | None = None
    ) -> dict[str, float]:
        """Loss, top-1 accuracy, top-5 accuracy (more than five classes), custom metrics and,
        for dict targets, per-task metrics over ``data``, in eval mode
        (:func:`trickbag.train.evaluation.evaluate`).

        ``forward(model, x) -> outputs`` replaces ``model(x)``, e.g. test-time augmentation:
        ``trainer.evaluate(data, forward=lambda m, x: tta_logits(m, x, translate=1))``; by
        default the run's ``state.eval_forward`` (set by the ``tta`` trick), else ``model(x)``."""
        return evaluate(self, data, prefix=prefix, forward=forward)

    def predict(self, data: Iterable[Any], *, forward: Callable[[nn.Module, Tensor], Tensor] | None = None
                ) -> Tensor | dict[str, Tensor]:
        """The model's outputs on every batch of ``data`` (inputs, or ``(inputs, targets)``),
        concatenated on the CPU (a dict of them for a multi-task model); ``forward`` as in
        :meth:`evaluate` (:func:`trickbag.train.evaluation.predict`)."""
        return predict(self, data, forward=forward)

    # ---- checkpoints ---------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        s = self._prepare()
        loader = self.train_data
        return {
            "format": CHECKPOINT_FORMAT,
            "model": s.raw_model.state_dict(),
            "optimizer": s.optimizer.state_dict(),
            "scaler": s.scaler.state_dict() if s.scaler is not None else None,
            "callback_names": [cb.name for cb in self.callbacks],
            "callbacks": [cb.state_dict() for cb in self.callbacks],
            "loader": loader.state_dict() if hasattr(loader, "state_dict") else None,
            "rng": rng_state(),
            "counters": {"step": s.step, "epoch": s.epoch, "batch_index": s.batch_index, "samples_seen": s.samples_seen,
                         "fit_time": self.fit_time},
            "metrics": dict(s.metrics),
            "epoch_progress": {
                "loss": self._epoch_loss.detach().cpu() if self._epoch_loss is not None else None,
                "correct": self._epoch_correct.detach().cpu() if self._epoch_correct is not None else None,
                "batches": self._epoch_batches,
                "samples": self._epoch_samples,
            },
            "history": s.history,
        }

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write everything a resumed run needs, atomically (see :func:`save_atomic`).

        Asked for during EPOCH_END, the checkpoint is written once the epoch is complete
        (after every EPOCH_END callback, with the counters at the next epoch), so that a run
        resumed from it starts the next epoch and never replays this one."""
        path = Path(path)
        if self._in_epoch_end:
            path.parent.mkdir(parents=True, exist_ok=True)  # callbacks may write beside it at once
            if path not in self._deferred:
                self._deferred.append(path)
            return path
        return self._write_checkpoint(path)

    def _write_checkpoint(self, path: Path) -> Path:
        save_atomic(self.checkpoint_state(), path)
        kill_point("checkpoint")
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint`; ``fit()`` then continues."""
        s = self._prepare()
        ckpt = load_checkpoint(path, map_location="cpu")
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a trickbag trainer checkpoint (format {ckpt.get('format')!r})")
        names = [cb.name for cb in self.callbacks]
        if ckpt["callback_names"] != names:
            raise ValueError(
                f"{path} was written with callbacks {ckpt['callback_names']}, this trainer has {names}; "
                "resume with the same configuration"
            )
        s.raw_model.load_state_dict(ckpt["model"])
        s.optimizer.load_state_dict(ckpt["optimizer"])
        if s.scaler is not None and ckpt["scaler"] is not None:
            s.scaler.load_state_dict(ckpt["scaler"])
        if ckpt["loader"] is not None and hasattr(self.train_data, "load_state_dict"):
            self.train_data.load_state_dict(ckpt["loader"])
        for cb, state in zip(self.callbacks, ckpt["callbacks"]):
            cb.load_state_dict(state)
        c = ckpt["counters"]
        s.step, s.epoch, s.batch_index, s.samples_seen = c["step"], c["epoch"], c["batch_index"], c["samples_seen"]
        s.history = list(ckpt["history"])
        self._fit_done = False
        s.metrics = dict(ckpt.get("metrics", {}))
        self.previous_fit_time = float(c.get("fit_time", 0.0))
        p = ckpt["epoch_progress"]
        if s.batch_index and p["loss"] is not None:
            self._epoch_loss = p["loss"].to(self.device)
            self._epoch_correct = p["correct"].to(self.device)
            self._epoch_batches, self._epoch_samples = p["batches"], p["samples"]
            self._epoch_start = time.perf_counter()
        set_rng_state(ckpt["rng"])
