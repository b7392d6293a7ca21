"""jaxnn: Keras-style neural networks as pure JAX functions, trained with optax."""
from jaxnn import activations, initializers, losses, metrics, optimizers
from jaxnn.layers import Activation, Dense, Dropout, Flatten, Layer, Reshape, ShapeError
from jaxnn.losses import to_categorical
from jaxnn.models import Sequential, summary
from jaxnn.training import Callback, History, Trainer, TrainState, plot_history

__version__ = "0.1.0"
