"""The layer protocol: an immutable description with pure `init` and `apply`.

    output_shape, params, state = layer.init(key, (None, 28, 28))
    y, new_state = layer.apply(params, x, state=state, key=key, train=True)

Shapes carry the batch dimension as None (`jaxnn.layers.shapes`). `params`
(trained) and `state` (non-trained, e.g. BatchNorm statistics) are nested
dicts of arrays; a layer without any returns `{}`. Calling a layer on
symbolic tensors builds a graph (`jaxnn.layers.symbolic`).

Masks follow Keras's implicit masking: a layer may make a (batch, time) bool
mask of real steps (`Embedding(mask_zero=True)`, `Masking`), layers that
keep steps apart pass it on (`supports_masking`), and recurrent layers and
GlobalAveragePooling1D use it (`takes_mask`). Sequential and graph models
carry it from layer to layer through `apply_masked`.
"""
from __future__ import annotations

import dataclasses
import math
import re
import warnings
from typing import Any, ClassVar

import jax

from jaxnn.layers.shapes import Shape, ShapeError, abstract_init
from jaxnn.layers.symbolic import call_layer

Params = dict
State = dict


def snake_case(name: str) -> str:
    """Keras-style default layer name: `Conv2D` -> `conv2d`, `BatchNormalization` -> `batch_normalization`."""
    s = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def count_params(tree) -> int:
    """Number of scalars in a pytree of arrays (or ShapeDtypeStructs)."""
    return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(tree))


@dataclasses.dataclass(frozen=True)
class Layer:
    """Base of all layers: a frozen, hashable description of hyperparameters.

    Subclasses are frozen dataclasses that implement `init` and `apply`;
    `name` names the layer's parameters inside a model (default: the snake-case
    class name, numbered by the model when repeated, as in Keras).
    `trainable=False` freezes its parameters (a model's: all of them): the
    Trainer's optimizer gives them zero updates and `summary` counts them as
    non-trainable. Unlike Keras, a frozen BatchNormalization still updates its
    moving statistics in training.
    """

    name: str | None = dataclasses.field(default=None, kw_only=True)
    trainable: bool = dataclasses.field(default=True, kw_only=True)
    supports_masking: ClassVar[bool] = False  # steps stay apart, so an input mask is also the output's
    takes_mask: ClassVar[bool] = False        # apply takes {"inputs": x, "mask": m} and uses the mask
    takes_integers: ClassVar[bool] = False    # meant for integer inputs (ids), not only for floats

    def init(self, key: jax.Array, input_shape: Shape) -> tuple[Shape, Params, State]:
        """Parameters and state for inputs of `input_shape`; returns the output shape too."""
        raise NotImplementedError(f"{type(self).__name__} must define init")

    def apply(self, params: Params, x, *, state: State | None = None, key=None, train: bool = False):
        """Forward pass `(params, x) -> (y, new_state)`; pure, jittable."""
        raise NotImplementedError(f"{type(self).__name__} must define apply")

    def __call__(self, inputs):
        """Call on symbolic tensors (from `jaxnn.Input`) to build a graph model; returns symbolic outputs."""
        return call_layer(self, inputs)

    @property
    def default_name(self) -> str:
        return snake_case(type(self).__name__)

    def compute_mask(self, inputs, mask=None):
        """The (batch, time) mask of the output, given the input's `mask` (None: every step is real).

        By default a layer that `supports_masking` passes the mask on and any
        other ends it; layers that make or reshape masks override this.
        """
        return mask if self.supports_masking else None

    def output_shape(self, input_shape: Shape) -> Shape:
        """Output shape without computing anything (parameters are only traced)."""
        return abstract_init(self, input_shape)[0]

    def summary_rows(self, name: str, input_shape: Shape, params, state) -> list[dict[str, Any]]:
        """Rows for `summary`: one per layer; containers give one per child."""
        trainable = count_params(params) if self.trainable else 0
        return [{
            "name": name,
            "type": type(self).__name__,
            "output_shape": self.output_shape(input_shape),
            "trainable": trainable,
            "non_trainable": count_params(params) + count_params(state) - trainable,
            "inputs": (),
        }]


def layer_from_spec(registry, spec: dict) -> Layer:
    """A layer from a config dict such as `{"type": "Dense", "units": 10}`, its type looked up in `registry`."""
    spec = dict(spec)
    if "type" not in spec:
        raise ValueError(f"layer spec needs a 'type' field, got {spec!r}")
    cls = registry.get(spec.pop("type"))
    try:
        return cls(**spec)
    except TypeError as e:
        raise ValueError(f"bad arguments for layer {cls.__name__}: {e}") from None


def dict_inputs(layer: Layer, x, keys: tuple[str, ...]) -> tuple:
    """The values of `keys` (None where absent) from a dict input that has "inputs" and no other keys;
    an array (or shape) `x` is `(x, None, ...)`."""
    if not isinstance(x, dict):
        return (x,) + (None,) * (len(keys) - 1)
    unknown = sorted(set(x) - set(keys))
    if unknown or "inputs" not in x:
        raise ValueError(f"{type(layer).__name__} takes an array or a dict with 'inputs' and optionally "
                         f"{', '.join(repr(k) for k in keys[1:])}; got keys {sorted(x)}")
    return tuple(x.get(k) for k in keys)


def _has_mask(mask) -> bool:
    return any(m is not None for m in mask) if isinstance(mask, (list, tuple)) else mask is not None


def apply_masked(layer: Layer, name: str, params, x, mask, **kwargs):
    """`layer.apply` under Keras's implicit masking: `(y, new_state, mask of y)`.

    `mask` is what earlier layers made for `x` (a list for a list of inputs).
    A layer that `takes_mask` gets `{"inputs": x, "mask": mask}`; a dict input
    written by the user keeps its own mask. A mask reaching a layer that can
    neither use nor pass it is dropped with a warning, as Keras does.
    """
    if isinstance(x, dict):
        mask = x.get("mask")
    elif _has_mask(mask):
        if layer.takes_mask:
            x = {"inputs": x, "mask": mask}
        elif not layer.supports_masking:
            warnings.warn(f"layer '{name}' ({type(layer).__name__}) does not support masking: the mask of its "
                          f"input (from Embedding(mask_zero=True) or Masking) stops there", stacklevel=3)
            mask = None
    y, new_state = layer.apply(params, x, **kwargs)
    return y, new_state, layer.compute_mask(x, mask)


def require_rank(layer: Layer, shape: tuple, axes: tuple[str, ...], what: str = "inputs") -> None:
    """A ShapeError naming the layer, the axes it expects and the shape it got, unless `shape` has len(axes) axes."""
    if len(shape) != len(axes):
        raise ShapeError(f"{type(layer).__name__} expects {what} ({', '.join(axes)}), got shape {tuple(shape)}")


def require_key(layer_name: str, key):
    """A layer that draws random numbers in training says so if `key` is missing."""
    if key is None:
        raise ValueError(
            f"{layer_name} draws random numbers when train=True: pass key=jax.random.key(...) to apply"
        )
    return key
