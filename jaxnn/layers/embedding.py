"""Embedding: integer ids -> learned vectors (Keras's Embedding)."""
from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import initializers, validation
from jaxnn.layers.base import Layer
from jaxnn.layers.shapes import ShapeError, as_shape


def _positive_int(layer: str, field: str, value):
    validation.positive_int(f"{layer} {field}", value)


@dataclasses.dataclass(frozen=True)
class Embedding(Layer):
    """Looks up row `id` of an (input_dim, output_dim) table: ids of shape S -> vectors of shape (*S, output_dim).

    Ids must lie in [0, input_dim). Outside `jax.jit` (concrete ids) a bad id
    raises ValueError naming it; inside jit nothing can raise, so the vector
    of an out-of-range id is all NaN, which shows in the loss instead of
    silently reusing another row. Float ids are cast to int32, as in Keras.
    The default initializer is Keras's "uniform", U(-0.05, 0.05).

    `mask_zero=True` marks id 0 as padding: in a Sequential or graph model the
    mask `ids != 0` reaches the layers after it as in Keras, so an LSTM
    skips the padding. Calling layers by hand, pass it yourself:
    `lstm.apply(p, {"inputs": vectors, "mask": embedding.compute_mask(ids)})`.
    """

    takes_integers: ClassVar[bool] = True

    input_dim: int
    output_dim: int
    embeddings_initializer: str | Callable = "uniform"
    _: dataclasses.KW_ONLY  # Keras's fourth positional argument is embeddings_regularizer
    mask_zero: bool = False

    def __post_init__(self):
        _positive_int("Embedding", "input_dim", self.input_dim)
        _positive_int("Embedding", "output_dim", self.output_dim)
        initializers.get(self.embeddings_initializer)

    def init(self, key, input_shape):
        shape = as_shape(input_shape)
        embeddings = initializers.get(self.embeddings_initializer)(key, (self.input_dim, self.output_dim), jnp.float32)
        return (*shape, self.output_dim), {"embeddings": embeddings}, {}

    def apply(self, params, x, *, state=None, key=None, train=False):
        embeddings = params["embeddings"]
        if embeddings.shape[0] != self.input_dim:
            raise ShapeError(f"Embedding expects embeddings of shape ({self.input_dim}, {self.output_dim}), "
                             f"got {tuple(embeddings.shape)}")
        ids = jnp.asarray(x)
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            ids = ids.astype(jnp.int32)
        if not isinstance(ids, jax.core.Tracer):
            self.check_ids(ids)
        ids = jnp.where(ids < 0, self.input_dim, ids)  # negative ids would wrap around; make them out of range
        return jnp.take(embeddings, ids, axis=0, mode="fill", fill_value=jnp.nan), {}

    def check_ids(self, ids):
        """Raise ValueError naming the first id outside [0, input_dim) (concrete ids only; a host-side check)."""
        ids = np.asarray(ids)
        bad = ids[(ids < 0) | (ids >= self.input_dim)]
        if bad.size:
            raise ValueError(f"Embedding got id {bad.flat[0]} outside [0, input_dim={self.input_dim}); "
                             f"ids must index rows of the ({self.input_dim}, {self.output_dim}) table")

    def compute_mask(self, ids, mask=None):
        """`ids != 0` when mask_zero (True where a step is real), else None; as Keras's compute_mask."""
        return jnp.asarray(ids) != 0 if self.mask_zero else None
