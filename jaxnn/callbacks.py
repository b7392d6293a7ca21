"""Keras's import path for the callbacks: `from jaxnn.callbacks import EarlyStopping` (they live in
`jaxnn.training.callbacks`, `ModelCheckpoint` in `jaxnn.training.checkpointing`)."""
from jaxnn.training.callbacks import (Callback, CSVLogger, EarlyStopping, LambdaCallback, ModelCheckpoint, PlotHistory,
                                      ProgressLogger, ReduceLROnPlateau, Run, TensorBoard, TerminateOnNaN)

__all__ = ["Callback", "CSVLogger", "EarlyStopping", "LambdaCallback", "ModelCheckpoint", "PlotHistory",
           "ProgressLogger", "ReduceLROnPlateau", "Run", "TensorBoard", "TerminateOnNaN"]
