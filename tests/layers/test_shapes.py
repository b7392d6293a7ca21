"""Shape helpers: `is_shape` tells one shape from a structure of shapes; `abstract_init` takes either."""
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.layers import Concatenate, Dense, ShapeError, abstract_init, is_shape


@pytest.mark.parametrize("value,expected", [
    ((None, 3), True), ([None, 3], True), ((), True),
    (((None, 3), (None, 4)), False), ([(None, 3)], False), ({"x": (None, 3)}, False), (jnp.zeros((2, 3)), False),
])
def test_is_shape_tells_one_shape_from_structures_and_arrays(value, expected):
    assert is_shape(value) is expected


def test_abstract_init_takes_one_shape_or_a_structure_of_shapes():
    out, params, state = abstract_init(Dense(4), [None, np.int64(3)])  # one shape, normalized by as_shape
    assert out == (None, 4) and params["kernel"].shape == (3, 4) and state == {}
    assert abstract_init(Concatenate(), [(None, 3), (None, 5)])[0] == (None, 8)
    with pytest.raises(ShapeError, match="input_shape dimensions must be positive"):
        abstract_init(Dense(4), (None, 0))
