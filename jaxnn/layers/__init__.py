"""Layers by family; `LAYERS` maps Keras class names to layer classes for configs."""
from jaxnn.layers.activation import ELU, LeakyReLU, PReLU, ReLU, RReLU, Softmax
from jaxnn.layers.base import Layer, ShapeError, abstract_init, count_params
from jaxnn.layers.core import Activation, Dense, Dropout, Flatten, Reshape
from jaxnn.layers.merge import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from jaxnn.layers.wrappers import FlaxModule, FunctionLayer
from jaxnn.registry import Registry

LAYERS: Registry = Registry("layer")
for _cls in (ELU, LeakyReLU, PReLU, ReLU, RReLU, Softmax):
    LAYERS.register(_cls.__name__, _cls)
for _cls in (Activation, Dense, Dropout, Flatten, Reshape):
    LAYERS.register(_cls.__name__, _cls)
for _cls in (Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract):
    LAYERS.register(_cls.__name__, _cls)


def from_spec(spec: dict) -> Layer:
    """Build a layer from a config dict such as `{"type": "Dense", "units": 10}`."""
    spec = dict(spec)
    if "type" not in spec:
        raise ValueError(f"layer spec needs a 'type' field, got {spec!r}")
    cls = LAYERS.get(spec.pop("type"))
    try:
        return cls(**spec)
    except TypeError as e:
        raise ValueError(f"bad arguments for layer {cls.__name__}: {e}") from None
