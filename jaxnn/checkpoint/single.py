"""`save_tree` / `load_tree`: one checkpoint at a path (a run's final parameters, transferred weights), synchronous."""
from __future__ import annotations

import os

import jax

from jaxnn.checkpoint import store
from jaxnn.checkpoint.trees import unflatten


def save_tree(path: str | os.PathLike, tree) -> str:
    """Write `tree` (nested dicts of arrays, sharded or not) as a checkpoint at `path`, replacing any old one
    atomically; every process of a multi-process run calls it. NonFiniteStateError if it holds NaN/inf."""
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    tmp = os.path.join(parent, f".tmp-{name}")
    record, arrays = store.prepare(tree)
    try:
        if store.is_primary():
            os.makedirs(parent, exist_ok=True)
            store.remove(tmp)
        store.barrier(f"jaxnn-save-tree-start-{name}")
        if arrays:
            with store.orbax_checkpointer(asynchronous=False) as ckptr:
                ckptr.save(os.path.join(tmp, store.ARRAYS_DIR), args=store.save_args(arrays))
        if store.is_primary():
            os.makedirs(tmp, exist_ok=True)
            store.write_meta(tmp, record)
            store.remove(path)
            os.rename(tmp, path)
            store.fsync_dir(parent)
    except Exception as e:  # orbax reports a failed write (a full disk too) as a ValueError, not an OSError
        if store.is_primary():
            store.remove(tmp)
        raise store.write_error(path, e) from None
    store.barrier(f"jaxnn-save-tree-end-{name}")
    return path


def load_tree(path: str | os.PathLike, like=None):
    """Read a checkpoint written by `save_tree` (or a step checkpoint), verified: with `like`, the tree shaped like
    it on its leaves' shardings (validated), else path -> host numpy array."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    meta = store.read_meta(path)
    where = f"checkpoint {path}"
    if like is None:
        flat, _ = store.restore(path, lambda e: store.target(jax.ShapeDtypeStruct(e["shape"], e["dtype"])), meta)
        return {p: jax.device_get(a) for p, a in flat.items()}
    from jaxnn.checkpoint.trees import check_structure

    check_structure(store.saved_spec(meta), like, where=where)
    wanted = store.targets(like)
    flat, _ = store.restore(path, lambda e: wanted[e["path"]], meta)
    return unflatten(flat, like, where=where)
