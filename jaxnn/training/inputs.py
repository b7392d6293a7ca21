"""What `Trainer.fit`, `evaluate` and `predict` check of the arrays they are given, before any step.

Integer or boolean inputs are refused unless the model starts with a layer
meant for ids (`Embedding`): a float layer given integers computes in the
integer dtype (Dense's kernel cast to uint8 outputs a constant), and a silent
cast would hide unscaled pixels (0..255). Non-numeric inputs are refused.
Fractional labels are refused for a sparse loss (one class id per example).
NaN or inf values are allowed (a user may want to see the loss go NaN) but
warned about with their count.
"""
from __future__ import annotations

import numbers
import warnings

import jax
import numpy as np

from jaxnn.layers.base import Layer
from jaxnn.layers.input import InputLayer


def takes_integers(layer: Layer) -> bool:
    """Whether `layer` is meant for integer inputs: it says so (`Embedding`), a Sequential's first layer does,
    a graph model holds such a layer, or a wrapper wraps one."""
    from jaxnn.models import Model, Sequential

    if layer.takes_integers:
        return True
    if isinstance(layer, Sequential):
        return any(takes_integers(child) for child in
                   [child for child in layer.layers if not isinstance(child, InputLayer)][:1])
    if isinstance(layer, Model):
        return any(takes_integers(child) for _, child in layer.named_layers())
    inner = getattr(layer, "layer", None)  # TimeDistributed, Bidirectional
    return isinstance(inner, Layer) and takes_integers(inner)


def _warn_nonfinite(name: str, a: np.ndarray) -> None:
    if np.isfinite(np.sum(a)):  # a fast pass (twice numpy's isfinite count); NaN, inf or an overflow count exactly
        return
    bad = ~np.isfinite(a)
    count = int(np.count_nonzero(bad))
    if count:
        rows = int(np.count_nonzero(bad.reshape(len(a), -1).any(axis=1))) if a.ndim else 1
        warnings.warn(f"{name} hold {count} NaN or inf values (in {rows} of {len(a) if a.ndim else 1} examples): "
                      "the loss and then the parameters will be NaN; drop or fill those examples",
                      stacklevel=6)  # the caller of fit or evaluate


def as_data(tree):
    """Nested Python lists of numbers as numpy arrays, as Keras takes them (a list or dict holding arrays, for
    several inputs or outputs, keeps its structure); a ragged list is refused in one line."""
    if isinstance(tree, dict):
        return {k: as_data(v) for k, v in tree.items()}
    if not isinstance(tree, (list, tuple)):
        return tree
    first = tree
    while isinstance(first, (list, tuple)) and first:
        first = first[0]
    if not isinstance(first, numbers.Number):  # a structure of arrays (or empty)
        return type(tree)(as_data(t) for t in tree)
    try:
        array = np.asarray(tree)
    except ValueError:
        array = np.empty(0, object)
    if array.dtype == object:
        raise ValueError("a nested list of numbers must be rectangular (every example the same shape); "
                         "give numpy arrays")
    return array


def check_inputs(model: Layer, x) -> None:
    """Each input array must be floating point, or integer for a model that `takes_integers`; NaN/inf warned."""
    for a in jax.tree_util.tree_leaves(x):
        dtype = np.dtype(getattr(a, "dtype", None) or np.asarray(a).dtype)
        if dtype.kind == "f":
            _warn_nonfinite("inputs", np.asarray(a))
        elif dtype.kind in "iub":
            if not takes_integers(model):
                raise ValueError(
                    f"inputs are {dtype}, but the model's first layer computes in floating point (given integers "
                    "it would compute in them and learn nothing): pass x.astype('float32') (images scaled, e.g. "
                    "/ 255), or start the model with an Embedding for integer ids")
        else:
            raise ValueError(f"inputs must be numbers (floating point, or integer ids for an Embedding), "
                             f"got dtype {dtype}")


def check_labels(y: np.ndarray, sparse: bool, num_classes: int) -> None:
    """Labels must be numbers; for a `sparse` loss whole class ids in [0, num_classes); NaN/inf warned."""
    if y.dtype.kind not in "iubf":
        raise ValueError(f"labels must be numbers, got dtype {y.dtype}")
    if y.dtype.kind == "f":
        _warn_nonfinite("labels", y)
    if not sparse:
        return
    finite = y[np.isfinite(y)] if y.dtype.kind == "f" else y
    fractional = finite[finite != np.round(finite)] if y.dtype.kind == "f" else finite[:0]
    if fractional.size:
        found = sorted(set(fractional.tolist()))[:5]
        raise ValueError(f"labels must be whole class ids for a sparse loss, found {found}: "
                         "round them, or give one-hot targets with a categorical loss")
    bad = finite[(finite < 0) | (finite >= num_classes)]
    if bad.size:
        raise ValueError(f"labels must be in [0, {num_classes}) for a model with {num_classes} outputs, "
                         f"found {sorted(set(bad.tolist()))[:5]}")
