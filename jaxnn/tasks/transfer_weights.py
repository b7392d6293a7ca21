"""Transfer learning: save params, load them by layer name into another model, freeze layers, fine-tune.

    save_params("runs/base/params", base_state.params)
    params = load_by_name(new_params, load_params("runs/base/params"), layers=["conv2d", "conv2d_1"])
    tx = freeze(optax.adam(1e-3), params, ["conv2d*"])       # phase 1: train the new head only
    tx = fine_tune_optimizer(params, learning_rate=1e-5)      # phase 2: everything, gently

After changing the optimizer, start its state afresh from the current params:
`state.replace(opt_state=tx.init(state.params))`, with a Trainer built on `tx`.
Paths name a parameter by layer and key, joined by "/": `dense/kernel`,
`block/conv2d/bias` inside a nested model.
"""
from __future__ import annotations

import fnmatch
import os
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxnn import checkpoint, optimizers


def save_params(path: str | os.PathLike, params) -> str:
    """Write `params` (nested dicts of arrays keyed by layer name) as a checksummed orbax checkpoint."""
    return checkpoint.save_tree(path, params)


def load_params(path: str | os.PathLike) -> dict:
    """Nested dicts of arrays from a `save_params` checkpoint, without needing the model that made them."""
    params: dict = {}
    for param_path, array in checkpoint.load_tree(path).items():
        *parents, leaf = param_path.split("/")
        node = params
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = jnp.asarray(array)
    return params


def param_paths(params) -> dict[str, jax.Array]:
    """"/"-joined path -> leaf, in flattening order: `{"dense/kernel": ..., "dense/bias": ...}`."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {jax.tree_util.keystr(path, simple=True, separator="/"): leaf for path, leaf in flat}


def _get(tree, path: str):
    for key in path.split("/"):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _set(tree: dict, path: str, value) -> dict:
    """A copy of `tree` with the subtree at `path` replaced (the input is not changed)."""
    key, _, rest = path.partition("/")
    return {**tree, key: _set(tree[key], rest, value) if rest else value}


def _compare(name: str, target, source) -> list[str]:
    """Every difference between two params subtrees: paths on one side only, and shape differences."""
    t, s = param_paths(target), param_paths(source)
    join = lambda p: f"{name}/{p}" if p else name
    problems = [f"{join(p)}: in the target {tuple(t[p].shape)} but not in the source" for p in t if p not in s]
    problems += [f"{join(p)}: in the source {tuple(s[p].shape)} but not in the target" for p in s if p not in t]
    problems += [f"{join(p)}: target shape {tuple(t[p].shape)} vs source shape {tuple(s[p].shape)}"
                 for p in t if p in s and t[p].shape != s[p].shape]
    return problems


def load_by_name(target_params: dict, source_params: dict, layers: Sequence[str] | None = None) -> dict:
    """`target_params` with the params of `layers` copied from `source_params` (cast to the target's dtypes).

    The copies are new arrays, so a train step that donates its state cannot
    delete the source model's params.

    `layers` are layer names or "/" paths (`"block/dense"`); by default every
    top-level name the two have in common. Any mismatch (a name missing on one
    side, a key or a shape that differs) raises one ValueError listing them all.
    """
    names = list(layers) if layers is not None else [n for n in target_params if n in source_params]
    if not names:
        raise ValueError(f"no layer names in common: the target has {', '.join(target_params) or 'none'}, "
                         f"the source {', '.join(source_params) or 'none'}")
    problems, loaded = [], target_params
    for name in names:
        target, source = _get(target_params, name), _get(source_params, name)
        if target is None or source is None:
            side, known = ("target", target_params) if target is None else ("source", source_params)
            problems.append(f"{name}: not in the {side} (its layers: {', '.join(known) or 'none'})")
            continue
        found = _compare(name, target, source)
        problems += found
        if not found:
            loaded = _set(loaded, name, jax.tree_util.tree_map(lambda t, s: jnp.array(s, t.dtype), target, source))
    if problems:
        raise ValueError(f"cannot load params by name, {len(problems)} mismatch(es):\n  " + "\n  ".join(problems))
    return loaded


def _matches(path: str, pattern: str) -> bool:
    """`pattern` (a name or fnmatch glob) matches the leaf's path or one of its ancestors (a whole layer)."""
    parts = path.split("/")
    return any(fnmatch.fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


def frozen_labels(params, patterns: Iterable[str]):
    """"frozen"/"trainable" per leaf of `params`; a pattern that matches nothing raises (a typo fails loudly)."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    paths = list(param_paths(params))
    unmatched = [p for p in patterns if not any(_matches(path, p) for path in paths)]
    if unmatched:
        raise ValueError(f"freeze pattern(s) {', '.join(map(repr, unmatched))} match no parameter; "
                         f"parameters: {', '.join(paths)}")
    labels = ["frozen" if any(_matches(path, p) for p in patterns) else "trainable" for path in paths]
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), labels)


def freeze(tx: optax.GradientTransformation, params, patterns: Iterable[str]) -> optax.GradientTransformation:
    """`tx` on trainable leaves and zero updates on those matching `patterns` (`"dense"`, `"conv2d*/kernel"`).

    Frozen parameters stay bit-identical and get no optimizer state. To
    unfreeze, build a new transformation with other patterns.
    """
    return optax.multi_transform({"trainable": tx, "frozen": optax.set_to_zero()}, frozen_labels(params, patterns))


def fine_tune_optimizer(params, *, optimizer: str = "adam", learning_rate: float = 1e-5,
                        frozen: Iterable[str] = (), **options) -> optax.GradientTransformation:
    """The optimizer (a name, with Keras's defaults) at a low `learning_rate` for fine-tuning, `frozen` kept fixed."""
    tx = optimizers.get(optimizer, learning_rate=learning_rate, **options)
    frozen = list(frozen)
    return freeze(tx, params, frozen) if frozen else tx
