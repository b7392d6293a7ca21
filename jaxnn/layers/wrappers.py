"""Layers from outside code: a pair of pure functions (`FunctionLayer`), a Flax linen module (`FlaxModule`) or an nnx one (`FlaxNNX`)."""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxnn.layers.base import Layer, require_key, snake_case
from jaxnn.layers.shapes import ShapeError, as_shape


def _keyword_params(fn: Callable) -> list[str]:
    """Names `fn` accepts as keywords (`**kwargs` does not count: nothing is passed blindly)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [n for n, p in inspect.signature(fn).parameters.items() if p.kind in kinds]


@dataclasses.dataclass(frozen=True)
class FunctionLayer(Layer):
    """A layer from two pure functions, as in stax: `init_fn` and `apply_fn`.

    - `init_fn(key, input_shape) -> (output_shape, params)` or `(output_shape, params, state)`;
      `input_shape` has the batch dimension as None (a list of shapes for several inputs).
    - `apply_fn(params, x) -> y`. If it has parameters named `key` and/or `train`
      they are passed; if it has one named `state`, it gets the layer's state and
      returns `(y, new_state)`.

    Example: a learned per-feature scale, used like any other layer.

        def init_scale(key, input_shape):
            return input_shape, {"scale": jnp.ones(input_shape[-1:])}

        def apply_scale(params, x):
            return x * params["scale"]

        scale = FunctionLayer(init_scale, apply_scale, name="scale")
        model = Sequential([Dense(16, "relu"), scale, Dense(1)])

    stax pairs fit as they are: `FunctionLayer(*stax.Dense(10), name="logits")`.
    """

    init_fn: Callable
    apply_fn: Callable

    def __post_init__(self):
        for field in ("init_fn", "apply_fn"):
            if not callable(getattr(self, field)):
                raise ValueError(f"FunctionLayer {field} must be a function, got {getattr(self, field)!r}")

    def init(self, key, input_shape):
        out = self.init_fn(key, input_shape)
        if not isinstance(out, tuple) or len(out) not in (2, 3):
            raise ValueError(f"FunctionLayer {self.name or self.default_name}: init_fn must return "
                             f"(output_shape, params) or (output_shape, params, state), got {type(out).__name__}")
        return out if len(out) == 3 else (*out, {})

    def apply(self, params, x, *, state=None, key=None, train=False):
        options = {"key": key, "train": train, "state": state or {}}
        accepted = _keyword_params(self.apply_fn)
        out = self.apply_fn(params, x, **{k: v for k, v in options.items() if k in accepted})
        return out if "state" in accepted else (out, {})


# `__call__` keywords that carry the train/eval mode, and whether each means "not training".
TRAIN_ARGS = {"train": False, "training": False, "is_training": False,
              "deterministic": True, "use_running_average": True}


@dataclasses.dataclass(frozen=True)
class FlaxModule(Layer):
    """A `flax.linen` Module as a jaxnn layer.

    `params` is the module's "params" collection; `state` holds its other
    collections (e.g. "batch_stats"), made mutable when `train=True`. `key`
    feeds the rng streams named in `rng_streams` (split in that order).
    `train_arg` names the `__call__` keyword that carries the mode: "auto"
    (default) picks the first of `TRAIN_ARGS` in the signature (`deterministic`
    and `use_running_average` get `not train`); None passes nothing.
    `init` runs the module's init on zeros of batch 1 and `input_dtype`.

        layer = FlaxModule(flax.linen.Dense(10))
        shape, params, state = layer.init(key, (None, 784))     # params == {"kernel", "bias"}
    """

    module: Any
    train_arg: str | None = "auto"
    rng_streams: tuple = ("dropout",)
    input_dtype: str = "float32"

    def __post_init__(self):
        if not (callable(getattr(self.module, "init_with_output", None)) and callable(getattr(self.module, "apply", None))):
            raise ValueError(f"FlaxModule module must be a flax.linen Module, got {type(self.module).__name__}")
        object.__setattr__(self, "rng_streams", tuple(self.rng_streams))
        accepted = _keyword_params(self.module.__call__)
        if self.train_arg not in ("auto", None) and self.train_arg not in accepted:
            raise ValueError(f"FlaxModule train_arg {self.train_arg!r} is not a keyword of "
                             f"{type(self.module).__name__}.__call__; allowed: {', '.join(accepted)}, 'auto' or None")

    @property
    def default_name(self) -> str:
        return snake_case(type(self.module).__name__)

    @property
    def mode_keyword(self) -> str | None:
        """The `__call__` keyword that gets the train/eval mode (None: the module takes none)."""
        if self.train_arg != "auto":
            return self.train_arg
        accepted = _keyword_params(self.module.__call__)
        return next((a for a in TRAIN_ARGS if a in accepted), None)

    def _mode(self, train: bool) -> dict:
        keyword = self.mode_keyword
        return {} if keyword is None else {keyword: train != TRAIN_ARGS.get(keyword, False)}

    def init(self, key, input_shape):
        input_shape = as_shape(input_shape)
        if any(d is None for d in input_shape[1:]):
            raise ShapeError(f"FlaxModule needs known non-batch dimensions, got input shape {input_shape}")
        dummy = jnp.zeros((1, *input_shape[1:]), self.input_dtype)
        y, variables = self.module.init_with_output({"params": key}, dummy, **self._mode(False))
        state = dict(variables)
        params = state.pop("params", {})
        output_shape = jax.tree_util.tree_map(lambda a: (input_shape[0], *a.shape[1:]), y)
        return output_shape, params, state

    def apply(self, params, x, *, state=None, key=None, train=False):
        state = state or {}
        variables = {"params": params, **state}
        rngs = {} if key is None else dict(zip(self.rng_streams, jax.random.split(key, len(self.rng_streams))))
        if train and state:
            y, updated = self.module.apply(variables, x, rngs=rngs, mutable=list(state), **self._mode(True))
            return y, dict(updated)
        return self.module.apply(variables, x, rngs=rngs, **self._mode(train)), state


@dataclasses.dataclass(frozen=True)
class FlaxNNX(Layer):
    """A `flax.nnx` Module as a jaxnn layer; `factory(rngs)` builds it (`lambda rngs: MyNet(rngs=rngs)`).

    `params` holds the module's `nnx.Param` variables and `state` every other
    variable (BatchNorm statistics) but its rng streams, as plain nested dicts.
    Each apply rebuilds the module with `nnx.merge` from an abstract copy
    (`nnx.eval_shape`: no compute), sets it to train or eval mode, gives its
    rng streams the keys `split(key, number of streams)` with counts 0 (a key
    is required when training) and splits the updated state back out.
    """

    factory: Callable
    input_dtype: str = "float32"

    def __post_init__(self):
        if not callable(self.factory):
            raise ValueError(f"FlaxNNX factory must be a function of rngs returning an nnx.Module, got {self.factory!r}")

    @staticmethod
    def _split(module):
        from flax import nnx

        return nnx.split(module, nnx.Param, nnx.RngState, ...)

    def init(self, key, input_shape):
        from flax import nnx

        input_shape = as_shape(input_shape)
        if any(d is None for d in input_shape[1:]):
            raise ShapeError(f"FlaxNNX needs known non-batch dimensions, got input shape {input_shape}")
        module = self.factory(nnx.Rngs(key))
        _, params, _, state = self._split(module)
        module.eval()
        y = module(jnp.zeros((1, *input_shape[1:]), self.input_dtype))
        output_shape = jax.tree_util.tree_map(lambda a: (input_shape[0], *a.shape[1:]), y)
        return output_shape, nnx.to_pure_dict(params), nnx.to_pure_dict(state)

    def apply(self, params, x, *, state=None, key=None, train=False):
        from flax import nnx

        graphdef, abstract_params, abstract_rngs, abstract_state = self._split(nnx.eval_shape(lambda: self.factory(nnx.Rngs(0))))
        rng_leaves, rng_tree = jax.tree_util.tree_flatten(nnx.to_pure_dict(abstract_rngs))
        if train and rng_leaves:
            key = require_key(self.name or self.default_name, key)
        keys = iter(jax.random.split(jax.random.key(0) if key is None else key, max(len(rng_leaves), 1)))
        rng_values = [next(keys) if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) else jnp.zeros(a.shape, a.dtype)
                      for a in rng_leaves]
        nnx.replace_by_pure_dict(abstract_params, params)
        nnx.replace_by_pure_dict(abstract_rngs, jax.tree_util.tree_unflatten(rng_tree, rng_values))
        nnx.replace_by_pure_dict(abstract_state, state or {})
        module = nnx.merge(graphdef, abstract_params, abstract_rngs, abstract_state)
        module.train() if train else module.eval()
        y = module(x)
        return y, (nnx.to_pure_dict(self._split(module)[3]) if train else (state or {}))
