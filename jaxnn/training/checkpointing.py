"""`ModelCheckpoint`: checkpoints of a fit in progress and the resume protocol that continues it exactly."""
from __future__ import annotations

import os
import warnings
from typing import Callable

import jax
import jax.numpy as jnp

from jaxnn import checkpoint as ckpt, validation
from jaxnn.training.loop import Callback, Run
from jaxnn.training.monitor import improved, resolve_mode


class ModelCheckpoint(Callback):
    """Checkpoints for exact resume: every `every_steps` steps and each epoch end, the last `keep` plus the best.

    A checkpoint holds the TrainState, the epoch's running statistics, the
    position in the epoch, the History and every callback's state, saved by
    orbax from the devices (sharded: every process writes its own shards) while
    training goes on. On train begin (with `restore`) the newest checkpoint
    that verifies is restored onto this run's shardings, whatever mesh wrote
    it, so a stopped run continues exactly where it was. `fingerprint` (plain
    JSON, e.g. the config) must equal the checkpoint's, else the run is refused
    naming the first differing field. `save_best_only` saves at epoch ends
    only, when `monitor` improved. A state holding NaN/inf is never saved. The
    directory is locked for this process from `check_compatible` or train
    begin on (`close` releases it; exiting does too).
    """

    order = 100

    def __init__(self, directory: str | os.PathLike, *, monitor: str | None = "val_loss", mode: str = "auto",
                 save_best_only: bool = False, every_steps: int = 0, keep: int = 3, restore: bool = True,
                 fingerprint: dict | None = None, print_fn: Callable[[str], None] | None = print):
        validation.integer("every_steps", every_steps, 0, "a non-negative integer (0: epoch ends only)")
        if save_best_only and monitor is None:
            raise ValueError("save_best_only needs a monitor")
        self.monitor, self.save_best_only, self.every_steps = monitor, save_best_only, every_steps
        self.mode = resolve_mode(monitor, mode) if monitor else None
        self.manager = ckpt.CheckpointManager(directory, keep=keep, best_mode=self.mode)
        self.restore, self.fingerprint, self.print_fn = restore, fingerprint, print_fn

    def check_compatible(self) -> None:
        """Take the directory's lock, then refuse (CheckpointMismatchError) if the newest checkpoint whose
        metadata verifies has another fingerprint; reads metadata only, and writes nothing before it passes."""
        self.manager.lock(claim=False)
        meta = self.manager.latest_meta()
        if meta is not None:
            try:
                self._check_fingerprint(meta)
            except ckpt.CheckpointMismatchError:
                self.manager.close()
                raise
        self.manager.lock()

    def _check_fingerprint(self, meta: dict) -> None:
        if self.fingerprint is None:
            return
        field = _first_difference(meta.get("fingerprint"), self.fingerprint)
        if field is not None:
            path, old, new = field
            raise ckpt.CheckpointMismatchError(
                f"{self.manager.directory} holds checkpoints of a different run: {path or 'config'} is {old!r} "
                f"there and {new!r} here; use another workdir, or move that one away")

    def on_train_begin(self, run):
        self.best = None
        self.manager.lock()
        if not self.restore:
            return
        where = f"checkpoint in {self.manager.directory}"

        def validate(meta):
            self._check_fingerprint(meta)
            spec = ckpt.saved_spec(meta)
            ckpt.check_structure(spec, run.state, "state/", where)
            ckpt.check_structure(spec, run.totals, "totals/", where)

        restored = self.manager.restore(_placement(run), validate)
        if restored is None:
            return
        flat, meta = restored
        run.state = ckpt.unflatten(flat, run.state, "state/", where)
        run.totals = ckpt.unflatten(flat, run.totals, "totals/", where)
        run.epoch, run.position, run.step = meta["epoch"], meta["position"], meta["step"]
        run.history.load_dict(meta["history"])
        run.stop_training = meta["stop_training"]
        self.best = meta.get("best")
        for name, cb in run.named_callbacks().items():
            prefix = f"callbacks/{name}/"
            arrays = {p[len(prefix):]: a for p, a in flat.items() if p.startswith(prefix)}
            cb.load_state_dict(run, meta["callbacks"].get(name, {}), arrays)
        if self.print_fn is not None:
            self.print_fn(f"Resuming from {os.path.basename(self.manager.path(meta['step']))}: epoch {run.epoch + 1}, "
                          f"step {run.position} of {run.steps_per_epoch} in the epoch (global step {run.step})")

    def save(self, run: Run, metric: float | None = None) -> str | None:
        """Checkpoint the run now (skipped, with a warning, if the run or the state to save is not finite).

        Returns once the arrays are copied on the devices (the step donates
        their buffers); orbax writes the copies in the background, committed
        before the next save and at the end of training.
        """
        found = run.find_nonfinite()
        if found is not None:
            warnings.warn(f"checkpoint at step {run.step} skipped: {found}", RuntimeWarning, stacklevel=2)
            return None
        named = run.named_callbacks()
        epoch, position = run.resume_point()
        meta = {"epoch": epoch, "position": position, "stop_training": run.stop_training, "best": self.best,
                "history": run.history.to_dict(),
                "callbacks": {name: cb.state_dict(run) for name, cb in named.items()},
                "fingerprint": self.fingerprint}
        # At an epoch end the resume point is the next epoch's start, whose running totals are zero.
        totals = jax.tree_util.tree_map(jnp.zeros_like, run.totals) if run.epoch_done else run.totals
        tree = {"callbacks": {name: a for name, cb in named.items() if (a := cb.arrays(run)) is not None},
                "state": run.state, "totals": totals}
        try:
            run.last_checkpoint = self.manager.save(run.step, tree, meta, metric)
        except ckpt.NonFiniteStateError as e:
            warnings.warn(f"checkpoint at step {run.step} skipped: {e}", RuntimeWarning, stacklevel=2)
            return None
        return run.last_checkpoint

    def on_step_end(self, run, step):
        if self.every_steps and run.step % self.every_steps == 0 and run.position < run.steps_per_epoch:
            if not self.save_best_only:
                self.save(run)

    def on_epoch_end(self, run, epoch, logs):
        current = logs.get(self.monitor) if self.monitor else None
        better = current is not None and improved(self.mode, current, self.best, 0.0)
        if better:
            self.best = current
        if better or not self.save_best_only:
            self.save(run, metric=current)

    def on_interrupt(self, run):
        self.save(run)
        self.manager.wait()

    def on_train_end(self, run):
        self.manager.wait()

    def close(self, release: bool = True) -> None:
        """Finish the pending save and release the directory's lock (unless not `release`)."""
        self.manager.close(release)


def _placement(run: Run):
    """Where each saved array goes: a state or totals leaf onto the live leaf's sharding; a callback's array
    (EarlyStopping's best weights mirror the parameters) onto the sharding of the state leaf with its path,
    else replicated over the state's mesh."""
    live = {**ckpt.targets(run.state, "state/"), **ckpt.targets(run.totals, "totals/")}
    some = next(iter(live.values()), None)
    mesh = getattr(getattr(some, "sharding", None), "mesh", None)

    def where(entry):
        if entry["path"] in live:
            return live[entry["path"]]
        rest = entry["path"].split("/", 2)[-1]  # callbacks/<name>/<path>
        mirror = live.get(f"state/{rest}")
        if mirror is not None and tuple(mirror.shape) == tuple(entry["shape"]):
            sharding = mirror.sharding
        elif mesh is not None:
            sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        else:
            sharding = some.sharding if some is not None else None
        return ckpt.target(jax.ShapeDtypeStruct(entry["shape"], entry["dtype"], sharding=sharding))

    return where


def _first_difference(old, new, path: str = ""):
    """(dotted path, old value, new value) of the first difference between two JSON trees, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(new) + [k for k in old if k not in new]:
            found = _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
            if found is not None:
                return found
        return None
    return None if old == new else (path, old, new)
