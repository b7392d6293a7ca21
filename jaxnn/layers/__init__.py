"""Layers by family, the protocol (`base`), shapes and symbolic tracing; `LAYERS` maps Keras class names to
layer classes for configs."""
from jaxnn.layers.activation import ELU, LeakyReLU, PReLU, ReLU, RReLU, Softmax
from jaxnn.layers.augment import RandomFlip, RandomTranslation
from jaxnn.layers.base import Layer, count_params, layer_from_spec
from jaxnn.layers.conv import Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose
from jaxnn.layers.core import (Activation, Dense, Dropout, Flatten, Masking, Reshape, SpatialDropout1D,
                               SpatialDropout2D)
from jaxnn.layers.embedding import Embedding
from jaxnn.layers.input import Input, InputLayer
from jaxnn.layers.merge import Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract
from jaxnn.layers.normalization import BatchNormalization, LayerNormalization
from jaxnn.layers.pooling import (AveragePooling1D, AveragePooling2D, AvgPool1D, AvgPool2D, GlobalAveragePooling1D,
                                  GlobalAveragePooling2D, GlobalAvgPool1D, GlobalAvgPool2D, GlobalMaxPool1D,
                                  GlobalMaxPool2D, GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPool1D, MaxPool2D,
                                  MaxPooling1D, MaxPooling2D)
from jaxnn.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN
from jaxnn.layers.shapes import ShapeError, abstract_init, as_shape, is_shape
from jaxnn.layers.wrappers import FlaxModule, FlaxNNX, FunctionLayer
from jaxnn.registry import Registry

LAYERS: Registry = Registry("layer")
for _cls in (Activation, Dense, Dropout, Flatten, Masking, Reshape, SpatialDropout1D, SpatialDropout2D,
             ELU, LeakyReLU, PReLU, ReLU, RReLU, Softmax,
             Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract,
             Conv1D, Conv2D, Conv1DTranspose, Conv2DTranspose, Embedding,
             BatchNormalization, LayerNormalization, SimpleRNN, LSTM, GRU, Bidirectional,
             RandomFlip, RandomTranslation):
    LAYERS.register(_cls.__name__, _cls)
for _cls in (MaxPooling1D, MaxPooling2D, AveragePooling1D, AveragePooling2D,
             GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalAveragePooling1D, GlobalAveragePooling2D):
    LAYERS.register(_cls.__name__, _cls, aliases=(_cls.__name__.replace("Average", "Avg").replace("Pooling", "Pool"),))

def from_spec(spec: dict) -> Layer:
    """Build a layer from a config dict such as `{"type": "Dense", "units": 10}`."""
    return layer_from_spec(LAYERS, spec)
