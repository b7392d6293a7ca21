"""Saving and restoring pytrees of arrays with orbax (no pickle anywhere)."""
from __future__ import annotations

import os

import jax


def save_tree(path: str | os.PathLike, tree) -> str:
    """Write `tree` (nested dicts of arrays) as an orbax checkpoint at `path`, replacing any old one.

    Orbax writes into a temporary directory and renames it when complete, so a
    crash mid-save leaves no checkpoint that looks whole.
    """
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, tree, force=True)
        ckptr.wait_until_finished()
    return path


def load_tree(path: str | os.PathLike, like=None):
    """Read a checkpoint written by `save_tree`; with `like`, restore to its structure, shapes and dtypes."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    with ocp.StandardCheckpointer() as ckptr:
        if like is None:
            return ckptr.restore(path)
        abstract = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), like)
        return ckptr.restore(path, abstract)
