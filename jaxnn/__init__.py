"""jaxnn: Keras-style neural networks as pure JAX functions, trained with optax."""
from jaxnn import activations, initializers, losses, metrics, optimizers
from jaxnn import transfer
from jaxnn.layers import Activation, Dense, Dropout, Flatten, Layer, Reshape, ShapeError
from jaxnn.losses import to_categorical
from jaxnn.functional import Input, Model
from jaxnn.models import Sequential, summary
from jaxnn.multi_output import MultiOutputLoss, OutputMetric
from jaxnn.training import Callback, History, Trainer, TrainState, plot_history
from jaxnn.training import callbacks  # jaxnn.callbacks.EarlyStopping, ModelCheckpoint, ...

__version__ = "0.1.0"
