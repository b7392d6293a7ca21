"""Helper of test_kill.py: a small fit with checkpoints every 3 steps that SIGKILLs itself at a chosen point.

    python kill_run.py WORKDIR [meta:N | prune:N | final]

meta:N   just before the N-th meta.json is written (orbax has committed the arrays)
prune:N  inside the N-th removal of a checkpoint, after its rename and before its files are deleted
final    inside the final save_tree, after its arrays are written and before it is renamed into place
Without a point it runs to the end: WORKDIR/final (parameters, optimizer state, step) and history.json.
"""
import json
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "training"))
from fit_helpers import blobs, classifier  # noqa: E402

from jaxnn import checkpoint as ckpt  # noqa: E402
from jaxnn.checkpoint import store  # noqa: E402
from jaxnn.training.callbacks import EarlyStopping, ReduceLROnPlateau  # noqa: E402
from jaxnn.training.checkpointing import ModelCheckpoint  # noqa: E402

workdir, point = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
kind, _, count = point.partition(":")
calls = {"n": 0}


def killing(original, counts, rename_first: bool):
    """`original` that SIGKILLs this process at the `count`-th call whose path `counts` accepts."""
    def wrapped(path, *args):
        if counts(path):
            calls["n"] += 1
            if calls["n"] == int(count or 1):
                if rename_first:  # as `store.remove` does before it deletes anything
                    parent, name = os.path.split(path)
                    os.rename(path, os.path.join(parent, f".trash-{name}"))
                os.kill(os.getpid(), signal.SIGKILL)
        return original(path, *args)
    return wrapped


if kind == "meta":
    store.write_meta = killing(store.write_meta, lambda path: True, rename_first=False)
elif kind == "prune":
    store.remove = killing(store.remove, lambda path: "step_" in path and os.path.exists(path), rename_first=True)
elif kind == "final":  # save_tree has written .tmp-final whole and is about to replace final with it
    store.remove = killing(store.remove, lambda path: os.path.basename(path) == "final", rename_first=False)

trainer = classifier(hidden=1024)  # kernels over store.INLINE_BYTES: orbax writes them, so it can be killed inside
x, y = blobs()
callbacks = [EarlyStopping(patience=3, restore_best_weights=True), ReduceLROnPlateau(patience=1, factor=0.5),
             ModelCheckpoint(os.path.join(workdir, "checkpoints"), every_steps=3, keep=2, print_fn=None)]
state, history = trainer.fit(trainer.init(0, (2,)), x, y, epochs=4, batch_size=32, validation_split=0.2,
                             callbacks=callbacks, verbose=0)
ckpt.save_tree(os.path.join(workdir, "final"), {"params": state.params, "opt_state": state.opt_state,
                                                 "step": state.step, "key": state.key})
with open(os.path.join(workdir, "history.json"), "w") as f:
    json.dump({"history": history.history, "epoch": history.epoch}, f)
