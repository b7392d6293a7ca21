"""Functional training: TrainState, pure steps, Trainer (fit/evaluate/predict), the fit loop, callbacks, History."""
from jaxnn.training import callbacks
from jaxnn.training.callbacks import (Callback, CSVLogger, EarlyStopping, LambdaCallback, ModelCheckpoint,
                                      PlotHistory, ProgressLogger, ReduceLROnPlateau, Run, TensorBoard,
                                      TerminateOnNaN)
from jaxnn.training.guard import NonFinite, NonFiniteError
from jaxnn.training.history import History, plot_history
from jaxnn.training.loop import TrainingInterrupted
from jaxnn.training.precision import Policy, get_policy
from jaxnn.training.state import TrainState
from jaxnn.training.steps import make_eval_step, make_train_step
from jaxnn.training.trainer import Trainer
