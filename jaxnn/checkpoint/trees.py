"""Pytrees as path -> leaf: the names checkpoints, the guard and callbacks use, and structure checks by path."""
from __future__ import annotations

import jax
import numpy as np


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, read or used; the message is one line."""


class CheckpointMismatchError(ValueError):
    """The checkpoint holds a different tree (another model, optimizer or config) than the run expects."""


def path_str(path) -> str:
    """A key path as "params/dense/kernel"."""
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def is_key(x) -> bool:
    """Whether `x` is a typed PRNG key array (stored as its uint32 key data)."""
    return jax.dtypes.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)


def leaves(tree, prefix: str = "") -> dict:
    """Path -> leaf, in flattening order; PRNG keys become their key data (still on their devices)."""
    return {prefix + path_str(path): jax.random.key_data(x) if is_key(x) else x
            for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def tree_spec(tree, prefix: str = "") -> dict[str, tuple[tuple[int, ...], str]]:
    """Path -> (shape, dtype) of every leaf (PRNG keys as their key data), in flattening order."""
    spec = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        shaped = jax.eval_shape(jax.random.key_data, leaf) if is_key(leaf) else leaf
        spec[prefix + path_str(path)] = (tuple(np.shape(shaped)), np.dtype(shaped.dtype).name)
    return spec


def flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """Path -> host numpy array for every leaf (only for arrays this process holds whole)."""
    flat = leaves(tree, prefix)
    return dict(zip(flat, map(np.asarray, jax.device_get(list(flat.values())))))


def check_structure(saved: dict[str, tuple], like, prefix: str = "", where: str = "checkpoint") -> None:
    """Raise CheckpointMismatchError naming the first path whose presence, shape or dtype differs."""
    expected = tree_spec(like, prefix)
    saved = {p: (tuple(s), d) for p, (s, d) in saved.items() if p.startswith(prefix)}
    for path, (shape, dtype) in expected.items():
        if path not in saved:
            raise CheckpointMismatchError(f"{where} does not match the model: {path} {shape} is in the model "
                                          f"but not in the checkpoint")
        if saved[path] != (shape, dtype):
            raise CheckpointMismatchError(
                f"{where} does not match the model: first mismatch at {path}: checkpoint has shape "
                f"{saved[path][0]} {saved[path][1]}, the model {shape} {dtype}")
    extra = [p for p in saved if p not in expected]
    if extra:
        raise CheckpointMismatchError(f"{where} does not match the model: {extra[0]} {saved[extra[0]][0]} is in "
                                      f"the checkpoint but not in the model")


def unflatten(flat: dict, like, prefix: str = "", where: str = "checkpoint"):
    """The tree shaped like `like` from path -> array (validated first; keys wrapped back; arrays kept where they are)."""
    check_structure({p: (tuple(np.shape(a)), np.dtype(a.dtype).name) for p, a in flat.items()}, like, prefix, where)
    pairs, treedef = jax.tree_util.tree_flatten_with_path(like)
    out = []
    for path, leaf in pairs:
        value = flat[prefix + path_str(path)]
        out.append(jax.random.wrap_key_data(value, impl=str(jax.random.key_impl(leaf))) if is_key(leaf)
                   else jax.numpy.asarray(value))
    return jax.tree_util.tree_unflatten(treedef, out)
