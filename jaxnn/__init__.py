"""jaxnn: Keras-style neural networks as pure JAX functions, trained with optax."""
from jaxnn import activations, initializers, losses, metrics, optimizers
from jaxnn.tasks import transfer_weights as transfer  # jaxnn.transfer.load_by_name, freeze, ...
from jaxnn.layers import (ELU, GRU, LSTM, Activation, Add, Average, AveragePooling1D, AveragePooling2D,
                          BatchNormalization, Bidirectional, Concatenate, Conv1D, Conv1DTranspose, Conv2D,
                          Conv2DTranspose, Dense, Dropout, Embedding, FlaxModule, FlaxNNX, Flatten, FunctionLayer,
                          GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
                          Layer, LayerNormalization, LeakyReLU, Masking, MaxPooling1D, MaxPooling2D, Maximum, Minimum,
                          Multiply, PReLU, RandomFlip, RandomTranslation, ReLU, Reshape, RReLU, ShapeError, SimpleRNN,
                          Softmax, SpatialDropout1D, SpatialDropout2D, Subtract)
from jaxnn.export import export, load_stablehlo
from jaxnn.losses import to_categorical
from jaxnn.layers import Input
from jaxnn.models import Model, Sequential, summary
from jaxnn.multi_output import MultiOutputLoss, OutputMetric
from jaxnn.report import classification_report
from jaxnn.saving import load_model, load_run, save_model
from jaxnn.training import Callback, History, Trainer, TrainState, plot_history
from jaxnn import callbacks  # from jaxnn.callbacks import EarlyStopping, ModelCheckpoint, ...

__version__ = "0.1.0"
