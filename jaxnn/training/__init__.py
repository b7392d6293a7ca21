"""Functional training: TrainState, pure steps, Trainer (fit/evaluate/predict), callbacks, History."""
from jaxnn.training.callbacks import Callback, ProgressLogger, Run
from jaxnn.training.history import History, plot_history
from jaxnn.training.state import TrainState
from jaxnn.training.steps import make_eval_step, make_train_step
from jaxnn.training.trainer import Trainer
