"""Data augmentation as layers (Keras's RandomFlip, RandomTranslation): random in training, the identity at inference.

They sit at the front of a model, so augmentation runs inside the jitted step
on the device, with the step's PRNG key, one draw per example. Inputs are
image batches `(batch, height, width, channels)`.
"""
from __future__ import annotations

import abc
import dataclasses

import jax
import jax.numpy as jnp

from jaxnn.layers.base import Layer, require_key, require_rank
from jaxnn.layers.shapes import as_shape

_FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")
_FILL_MODES = ("constant", "nearest", "reflect")
_IMAGE_AXES = ("batch", "height", "width", "channels")


@dataclasses.dataclass(frozen=True)
class _ImageAugmentation(Layer, abc.ABC):
    """Shape checks, the inference identity and the key for augmentations; subclasses define `_augment`."""

    def init(self, key, input_shape):
        shape = as_shape(input_shape)
        require_rank(self, shape, _IMAGE_AXES, "images")
        return shape, {}, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        require_rank(self, x.shape, _IMAGE_AXES, "images")
        if not train:
            return x, {}
        return self._augment(x, require_key(self.name or self.default_name, key)), {}

    @abc.abstractmethod
    def _augment(self, x: jax.Array, key: jax.Array) -> jax.Array:
        """The batch `x` augmented with draws from `key` (training only); a subclass without it cannot be made."""


@dataclasses.dataclass(frozen=True)
class RandomFlip(_ImageAugmentation):
    """Flips each image left-right (`horizontal`), upside down (`vertical`) or both, each with probability 1/2."""

    mode: str = "horizontal_and_vertical"

    def __post_init__(self):
        if self.mode not in _FLIP_MODES:
            raise ValueError(f"RandomFlip mode must be one of {', '.join(_FLIP_MODES)}, got {self.mode!r}")

    def _augment(self, x, key):
        flip_h, flip_v = jax.random.bernoulli(key, 0.5, (2, x.shape[0], 1, 1, 1))
        if self.mode in ("horizontal", "horizontal_and_vertical"):
            x = jnp.where(flip_h, x[:, :, ::-1], x)
        if self.mode in ("vertical", "horizontal_and_vertical"):
            x = jnp.where(flip_v, x[:, ::-1], x)
        return x


def _source_index(index: jax.Array, size: int, fill_mode: str) -> jax.Array:
    """Where each shifted pixel comes from; out of range stays out of range for `constant`."""
    if fill_mode == "nearest":
        return jnp.clip(index, 0, size - 1)
    if fill_mode == "reflect":  # d c b a | a b c d | d c b a, as Keras's "reflect"
        period = jnp.mod(index, 2 * size)
        return jnp.where(period < size, period, 2 * size - 1 - period)
    return index


@dataclasses.dataclass(frozen=True)
class RandomTranslation(_ImageAugmentation):
    """Shifts each image by a whole number of pixels, up to `height_factor` and `width_factor` of its size.

    A factor `f` draws shifts uniformly from `-round(f * size)` to
    `+round(f * size)`; a pair `(lo, hi)` from `round(lo * size)` to
    `round(hi * size)` (negative: up or left). Uncovered pixels are
    `fill_value` (`constant`), the nearest edge pixel (`nearest`) or the image
    mirrored at its edge (`reflect`). Unlike Keras, shifts are whole pixels, so
    nothing is interpolated and shifted pixels keep their exact values.
    """

    height_factor: float | tuple[float, float] = 0.1
    width_factor: float | tuple[float, float] = 0.1
    fill_mode: str = "constant"
    fill_value: float = 0.0

    def __post_init__(self):
        for field in ("height_factor", "width_factor"):
            if isinstance(getattr(self, field), list):  # from a config: a tuple keeps the layer hashable
                object.__setattr__(self, field, tuple(getattr(self, field)))
            lo, hi = self._range(field)
            if not -1.0 <= lo <= hi <= 1.0:
                raise ValueError(f"RandomTranslation {field} must be a factor in [0, 1] or a pair -1 <= lo <= hi <= 1, "
                                 f"got {getattr(self, field)!r}")
        if self.fill_mode not in _FILL_MODES:
            raise ValueError(f"RandomTranslation fill_mode must be one of {', '.join(_FILL_MODES)}, "
                             f"got {self.fill_mode!r}")

    def _range(self, field: str) -> tuple[float, float]:
        factor = getattr(self, field)
        pair = factor if isinstance(factor, tuple) else (None, factor)
        try:
            if len(pair) != 2:
                raise TypeError
            lo, hi = (-float(pair[1]), float(pair[1])) if pair[0] is None else (float(pair[0]), float(pair[1]))
        except (TypeError, ValueError):
            raise ValueError(f"RandomTranslation {field} must be a number or a pair of numbers, got {factor!r}") from None
        return lo, hi

    def _augment(self, x, key):
        batch, height, width = x.shape[:3]
        (h_lo, h_hi), (w_lo, w_hi) = self._range("height_factor"), self._range("width_factor")
        key_h, key_w = jax.random.split(key)
        shift_h = jax.random.randint(key_h, (batch,), round(h_lo * height), round(h_hi * height) + 1)
        shift_w = jax.random.randint(key_w, (batch,), round(w_lo * width), round(w_hi * width) + 1)
        rows = jnp.arange(height)[None, :] - shift_h[:, None]  # (batch, height): source row of each output row
        cols = jnp.arange(width)[None, :] - shift_w[:, None]
        src_rows = _source_index(rows, height, self.fill_mode)
        src_cols = _source_index(cols, width, self.fill_mode)
        gathered = jax.vmap(lambda img, r, c: img[jnp.clip(r, 0, height - 1)][:, jnp.clip(c, 0, width - 1)])(
            x, src_rows, src_cols)
        if self.fill_mode != "constant":
            return gathered
        inside = (((src_rows >= 0) & (src_rows < height))[:, :, None] & ((src_cols >= 0) & (src_cols < width))[:, None, :])
        return jnp.where(inside[..., None], gathered, jnp.asarray(self.fill_value, x.dtype))
