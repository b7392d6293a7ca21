"""Recurrent layers: SimpleRNN, LSTM, GRU (Keras's equations and weight layout) and Bidirectional.

Sequences are (batch, time, features), run with `jax.lax.scan` over time; the
input projection x @ kernel is one matmul over all steps before the scan.

`apply` takes the sequence array, or a dict for the optional extras:

    y, _ = lstm.apply(params, x)
    y, _ = lstm.apply(params, {"inputs": x, "mask": mask, "initial_state": (h0, c0)})

A dict (rather than extra keyword arguments) keeps the one `apply` signature
every layer has, so the extras also flow through `Sequential` and graph
models: `LSTM(8)({"inputs": x, "mask": m})` on symbolic tensors. `mask` is a
(batch, time) bool array, True for real steps; at a masked step the state is
carried over unchanged and the output repeats the previous one (Keras's rule).
`initial_state` is one (batch, units) array per state (LSTM: h and c).

`dropout` and `recurrent_dropout` (Keras's; Gal & Ghahramani 2016) drop
input features and the previous output h where it enters the recurrent
matmuls, with one mask per sequence kept over all its steps, in training only
(a key is then needed).

Outputs: the last output (batch, units), or with return_sequences=True every
step's (batch, time, units); with return_state=True a tuple
(outputs, *final_states). go_backwards=True reads the sequence from its end
and, as in Keras, returns the sequence of outputs in that reversed order.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp

from jaxnn import activations, initializers, validation
from jaxnn.layers.base import Layer, dict_inputs, layer_from_spec, require_key
from jaxnn.layers.shapes import ShapeError, as_shape, is_shape
from jaxnn.registry import Registry

INPUT_KEYS = ("inputs", "mask", "initial_state")
MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def split_inputs(layer: Layer, x) -> tuple:
    """(inputs, mask, initial_state) from an array or shape, or from a dict with keys among INPUT_KEYS."""
    return dict_inputs(layer, x, INPUT_KEYS)


def _state_tuple(initial_state) -> tuple | None:
    """Initial state(s) as a tuple: one array (or shape) becomes a 1-tuple."""
    if initial_state is None:
        return None
    if isinstance(initial_state, (list, tuple)) and not is_shape(initial_state):
        return tuple(initial_state)
    return (initial_state,)


def _compatible(shape, expected) -> bool:
    return len(shape) == len(expected) and all(a is None or b is None or a == b for a, b in zip(shape, expected))


def _shape_of(value) -> tuple:
    """The shape of an array, or `value` itself when it is a shape (init works on shapes, apply on arrays)."""
    return tuple(value) if is_shape(value) else tuple(value.shape)


@dataclasses.dataclass(frozen=True)
class _Recurrent(Layer):
    """A recurrent layer: `gates` blocks of `units` in the kernels, states `state_names` (h first).

    Each cell defines `_cell(params, projected, states, h_in) -> new_states`,
    the step from the projected input x_t @ kernel + bias and the previous
    states; `h_in` is h as the recurrent matmuls see it (after recurrent_dropout).
    """

    gates: ClassVar[int]
    state_names: ClassVar[tuple[str, ...]] = ("h",)
    takes_mask = True

    units: int
    activation: str | Callable | None = "tanh"
    _: dataclasses.KW_ONLY
    use_bias: bool = True
    kernel_initializer: str | Callable = "glorot_uniform"
    recurrent_initializer: str | Callable = "orthogonal"
    bias_initializer: str | Callable = "zeros"
    return_sequences: bool = False
    return_state: bool = False
    go_backwards: bool = False
    dropout: float = 0.0
    recurrent_dropout: float = 0.0

    def __post_init__(self):
        cls = type(self).__name__
        validation.positive_int(f"{cls} units", self.units)
        for field in ("dropout", "recurrent_dropout"):
            if not 0.0 <= getattr(self, field) < 1.0:
                raise ValueError(f"{cls} {field} must be in [0, 1), got {getattr(self, field)!r}")
        activations.get(self.activation)
        activations.get(getattr(self, "recurrent_activation", None))
        for field in ("kernel_initializer", "recurrent_initializer", "bias_initializer"):
            initializers.get(getattr(self, field))

    def compute_mask(self, inputs, mask=None):
        """The input's mask stays with the sequence of outputs; a last output (or a state tuple) has none."""
        return mask if self.return_sequences and not self.return_state else None

    def _bias(self, key) -> jax.Array:
        return initializers.get(self.bias_initializer)(key, (self.gates * self.units,), jnp.float32)

    def _input_bias(self, params):
        return params["bias"]

    def _check_shapes(self, shape, mask_shape, state_shapes):
        cls, units = type(self).__name__, self.units
        if len(shape) != 3 or shape[-1] is None:
            raise ShapeError(f"{cls} expects inputs (batch, time, features) with known features, got shape {shape}")
        if mask_shape is not None and not _compatible(mask_shape, shape[:2]):
            raise ShapeError(f"{cls} expects a mask of shape (batch, time) = {shape[:2]}, got {mask_shape}")
        expected = ((shape[0], units),) * len(self.state_names)
        if state_shapes is not None and (len(state_shapes) != len(expected) or
                                         not all(_compatible(s, e) for s, e in zip(state_shapes, expected))):
            raise ShapeError(f"{cls} expects initial_state as {len(expected)} array(s) "
                             f"({', '.join(self.state_names)}) of shape (batch, {units}), got shapes {state_shapes}")

    def _split_and_check(self, x) -> tuple:
        inputs, mask, initial_state = split_inputs(self, x)
        states = _state_tuple(initial_state)
        self._check_shapes(_shape_of(inputs), None if mask is None else _shape_of(mask),
                           None if states is None else tuple(_shape_of(s) for s in states))
        return inputs, mask, states

    def dropout_masks(self, key, batch: int, features: int, dtype=jnp.float32) -> tuple:
        """(input mask (batch, features), recurrent mask (batch, units)) for one sequence batch, each 0 or
        1/(1 - rate) (None where its rate is 0): what `apply` draws from `key` in training."""
        k_input, k_recurrent = jax.random.split(key)

        def mask(k, rate, size):
            if not rate:
                return None
            return jax.random.bernoulli(k, 1.0 - rate, (batch, size)).astype(dtype) / jnp.asarray(1.0 - rate, dtype)

        return mask(k_input, self.dropout, features), mask(k_recurrent, self.recurrent_dropout, self.units)

    def init(self, key, input_shape):
        shape, _, _ = self._split_and_check(input_shape)
        shape = as_shape(shape)
        k_kernel, k_recurrent, k_bias = jax.random.split(key, 3)
        width = self.gates * self.units
        params = {
            "kernel": initializers.get(self.kernel_initializer)(k_kernel, (shape[-1], width), jnp.float32),
            "recurrent_kernel": initializers.get(self.recurrent_initializer)(k_recurrent, (self.units, width), jnp.float32),
        }
        if self.use_bias:
            params["bias"] = self._bias(k_bias)
        outputs = (shape[0], shape[1], self.units) if self.return_sequences else (shape[0], self.units)
        if self.return_state:
            return (outputs, *((shape[0], self.units),) * len(self.state_names)), params, {}
        return outputs, params, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        inputs, mask, states = self._split_and_check(x)
        kernel = params["kernel"]
        if inputs.shape[-1] != kernel.shape[0]:
            raise ShapeError(f"{type(self).__name__} expects inputs (batch, time, {kernel.shape[0]}), "
                             f"got shape {tuple(inputs.shape)}")
        if states is None:
            states = (jnp.zeros((inputs.shape[0], self.units), inputs.dtype),) * len(self.state_names)
        input_mask, recurrent_mask = None, None
        if train and (self.dropout or self.recurrent_dropout):
            key = require_key(self.name or self.default_name, key)
            input_mask, recurrent_mask = self.dropout_masks(key, inputs.shape[0], inputs.shape[-1], inputs.dtype)
        if input_mask is not None:
            inputs = inputs * input_mask[:, None, :]  # the same features of a sequence dropped at every step
        projected = jnp.dot(inputs, kernel.astype(inputs.dtype))
        if self.use_bias:
            projected = projected + self._input_bias(params).astype(projected.dtype)

        def step(carry, xs):
            projected_t, mask_t = xs
            h_in = carry[0] if recurrent_mask is None else carry[0] * recurrent_mask
            new = self._cell(params, projected_t, carry, h_in)
            if mask_t is not None:  # masked steps keep the previous state (and so repeat the previous output)
                new = tuple(jnp.where(mask_t[:, None], n, c) for n, c in zip(new, carry))
            return new, new[0] if self.return_sequences else None

        time_major = (jnp.swapaxes(projected, 0, 1), None if mask is None else jnp.swapaxes(mask, 0, 1).astype(bool))
        final, sequence = jax.lax.scan(step, tuple(s.astype(inputs.dtype) for s in states), time_major,
                                       reverse=self.go_backwards)
        if self.return_sequences:
            outputs = jnp.swapaxes(sequence, 0, 1)
            outputs = jnp.flip(outputs, axis=1) if self.go_backwards else outputs
        else:
            outputs = final[0]
        return ((outputs, *final) if self.return_state else outputs), {}


@dataclasses.dataclass(frozen=True)
class SimpleRNN(_Recurrent):
    """Fully connected recurrence h_t = activation(x_t @ kernel + h_{t-1} @ recurrent_kernel + bias).

    Parameters: units * (features + units + 1).
    """

    gates: ClassVar[int] = 1

    def _cell(self, params, projected, states, h_in):
        recurrent = jnp.dot(h_in, params["recurrent_kernel"].astype(h_in.dtype))
        return (activations.get(self.activation)(projected + recurrent),)


@dataclasses.dataclass(frozen=True)
class LSTM(_Recurrent):
    """Long short-term memory (Hochreiter & Schmidhuber 1997), Keras's gate order i, f, c, o.

    z = x_t @ kernel + h @ recurrent_kernel + bias; i, f, g, o = split(z, 4);
    c = sigma(f) * c + sigma(i) * tanh(g); h = sigma(o) * tanh(c), with sigma
    the recurrent_activation and tanh the activation. unit_forget_bias=True
    starts the forget-gate bias at 1 (Jozefowicz et al. 2015).
    Parameters: 4 * units * (features + units + 1).
    """

    gates: ClassVar[int] = 4
    state_names: ClassVar[tuple[str, ...]] = ("h", "c")

    recurrent_activation: str | Callable | None = "sigmoid"
    _: dataclasses.KW_ONLY
    unit_forget_bias: bool = True

    def _bias(self, key):
        if not self.unit_forget_bias:
            return super()._bias(key)
        k_input, k_rest = jax.random.split(key)
        init = initializers.get(self.bias_initializer)
        return jnp.concatenate([init(k_input, (self.units,), jnp.float32), jnp.ones((self.units,), jnp.float32),
                                init(k_rest, (2 * self.units,), jnp.float32)])

    def _cell(self, params, projected, states, h_in):
        _, c = states
        z = projected + jnp.dot(h_in, params["recurrent_kernel"].astype(h_in.dtype))
        i, f, g, o = jnp.split(z, 4, axis=-1)
        act, gate = activations.get(self.activation), activations.get(self.recurrent_activation)
        c = gate(f) * c + gate(i) * act(g)
        return gate(o) * act(c), c


@dataclasses.dataclass(frozen=True)
class GRU(_Recurrent):
    """Gated recurrent unit (Cho et al. 2014), Keras's gate order z, r, h.

    z = sigma(x W_z + h U_z + b), r = sigma(x W_r + h U_r + b),
    reset_after=True (Keras 3's default): hh = tanh(x W_h + b_in + r * (h U_h + b_rec)),
    with two bias rows (input and recurrent), shape (2, 3 * units);
    reset_after=False: hh = tanh(x W_h + (r * h) U_h + b), one bias row.
    h = z * h + (1 - z) * hh.
    Parameters: 3 * (units * (features + units) + units * (2 if reset_after else 1)).
    """

    gates: ClassVar[int] = 3

    recurrent_activation: str | Callable | None = "sigmoid"
    _: dataclasses.KW_ONLY
    reset_after: bool = True

    def _bias(self, key):
        shape = (2, 3 * self.units) if self.reset_after else (3 * self.units,)
        return initializers.get(self.bias_initializer)(key, shape, jnp.float32)

    def _input_bias(self, params):
        return params["bias"][0] if self.reset_after else params["bias"]

    def _cell(self, params, projected, states, h_in):
        (h,) = states
        kernel = params["recurrent_kernel"].astype(h.dtype)
        act, gate = activations.get(self.activation), activations.get(self.recurrent_activation)
        x_z, x_r, x_h = jnp.split(projected, 3, axis=-1)
        if self.reset_after:
            recurrent = jnp.dot(h_in, kernel)
            if self.use_bias:
                recurrent = recurrent + params["bias"][1].astype(h.dtype)
            r_z, r_r, r_h = jnp.split(recurrent, 3, axis=-1)
            z, r = gate(x_z + r_z), gate(x_r + r_r)
            candidate = act(x_h + r * r_h)
        else:
            r_z, r_r = jnp.split(jnp.dot(h_in, kernel[:, :2 * self.units]), 2, axis=-1)
            z, r = gate(x_z + r_z), gate(x_r + r_r)
            candidate = act(x_h + jnp.dot(r * h_in, kernel[:, 2 * self.units:]))
        return (z * h + (1 - z) * candidate,)


RECURRENT: Registry = Registry("recurrent layer")  # what a Bidirectional config spec may wrap
for _cls in (SimpleRNN, LSTM, GRU):
    RECURRENT.register(_cls.__name__, _cls)


@dataclasses.dataclass(frozen=True)
class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy backwards over the sequence and merges the two outputs.

    The backward copy is `layer` with go_backwards=True (or `backward_layer`);
    its sequence output is flipped back so step t of both lines up, and with a
    mask both sequences are zero at masked steps (Keras does the same). Params
    are `forward_<name>` and `backward_<name>` (name: the wrapped layer's).
    `layer` may also be a config spec, `{"type": "LSTM", "units": 64}`.
    merge_mode: "concat" (features doubled), "sum", "mul", "ave", or None
    (a tuple of both). With return_state the output is a tuple
    (merged, *forward_states, *backward_states); a dict input's
    initial_state lists the forward states, then the backward ones.
    """

    takes_mask = True

    layer: _Recurrent
    merge_mode: str | None = "concat"
    _: dataclasses.KW_ONLY  # Keras's third positional argument is weights
    backward_layer: _Recurrent | None = None

    def __post_init__(self):
        for field in ("layer", "backward_layer"):
            if isinstance(getattr(self, field), dict):  # a config spec such as {"type": "LSTM", "units": 64}
                object.__setattr__(self, field, layer_from_spec(RECURRENT, getattr(self, field)))
        for field in ("layer", "backward_layer"):
            value = getattr(self, field)
            if not isinstance(value, _Recurrent) and not (field == "backward_layer" and value is None):
                raise ValueError(f"Bidirectional {field} must be a recurrent layer (SimpleRNN, LSTM, GRU), got {value!r}")
        if self.merge_mode not in MERGE_MODES:
            raise ValueError(f"Bidirectional merge_mode must be one of {', '.join(map(repr, MERGE_MODES))}, "
                             f"got {self.merge_mode!r}")
        forward, backward = self.layer, self.backward
        if forward.go_backwards == backward.go_backwards:
            raise ValueError(f"Bidirectional needs layers reading in opposite directions, got go_backwards="
                             f"{forward.go_backwards} for both")
        for field in ("return_sequences", "return_state"):
            if getattr(forward, field) != getattr(backward, field):
                raise ValueError(f"Bidirectional layer and backward_layer must agree on {field}, got "
                                 f"{getattr(forward, field)} and {getattr(backward, field)}")

    @property
    def backward(self) -> _Recurrent:
        """The layer read backwards: `backward_layer`, or a copy of `layer` with go_backwards=True."""
        if self.backward_layer is not None:
            return self.backward_layer
        return dataclasses.replace(self.layer, go_backwards=True)

    def _named(self) -> list[tuple[str, _Recurrent]]:
        return [(f"{prefix}_{layer.name or layer.default_name}", layer)
                for prefix, layer in (("forward", self.layer), ("backward", self.backward))]

    def _split(self, x) -> list:
        """The forward and backward layers' inputs: `x` with initial_state cut into the two halves."""
        inputs, mask, initial_state = split_inputs(self, x)
        states = _state_tuple(initial_state)
        count = len(self.layer.state_names)
        halves = [None, None] if states is None else [states[:count], states[count:]]
        extras = {"mask": mask} if mask is not None else {}
        return [{"inputs": inputs, **extras, **({"initial_state": h} if h is not None else {})} for h in halves]

    def compute_mask(self, inputs, mask=None):
        """The wrapped layer's rule; without a merge mode the output is a tuple, which has no mask."""
        return self.layer.compute_mask(inputs, mask) if self.merge_mode else None

    def _parts(self, y) -> tuple:
        """(outputs, states) of a wrapped layer's output (or output shape)."""
        return (y[0], tuple(y[1:])) if self.layer.return_state else (y, ())

    def _assemble(self, merged: tuple, states: tuple):
        """Keras's output structure: the merged output alone, or a tuple with the second direction and/or states."""
        return (*merged, *states) if self.layer.return_state or self.merge_mode is None else merged[0]

    def init(self, key, input_shape):
        (f_name, forward), (b_name, backward) = self._named()
        f_in, b_in = self._split(input_shape)
        k_forward, k_backward = jax.random.split(key)
        f_shape, f_params, _ = forward.init(k_forward, f_in)
        b_shape, b_params, _ = backward.init(k_backward, b_in)
        (out, f_states), (_, b_states) = self._parts(f_shape), self._parts(b_shape)
        if self.merge_mode == "concat":
            merged = ((*out[:-1], 2 * out[-1]),)
        else:
            merged = (out, out) if self.merge_mode is None else (out,)
        return self._assemble(merged, f_states + b_states), {f_name: f_params, b_name: b_params}, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        (f_name, forward), (b_name, backward) = self._named()
        f_in, b_in = self._split(x)
        k_forward, k_backward = (None, None) if key is None else jax.random.split(key)
        (f_out, f_states) = self._parts(forward.apply(params[f_name], f_in, key=k_forward, train=train)[0])
        (b_out, b_states) = self._parts(backward.apply(params[b_name], b_in, key=k_backward, train=train)[0])
        if self.layer.return_sequences:
            b_out = jnp.flip(b_out, axis=1)
            if "mask" in f_in:
                keep = jnp.asarray(f_in["mask"], bool)[:, :, None]
                f_out, b_out = jnp.where(keep, f_out, 0), jnp.where(keep, b_out, 0)
        if self.merge_mode == "concat":
            merged = (jnp.concatenate([f_out, b_out], axis=-1),)
        elif self.merge_mode is None:
            merged = (f_out, b_out)
        else:
            combine = {"sum": jnp.add, "mul": jnp.multiply, "ave": lambda a, b: (a + b) / 2}[self.merge_mode]
            merged = (combine(f_out, b_out),)
        return self._assemble(merged, f_states + b_states), {}
