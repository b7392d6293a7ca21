"""Config names -> optax GradientTransformations, with Keras's defaults.

`get("adam", learning_rate=1e-3)` builds `optax.adam`; any optax
GradientTransformation passes through unchanged.
"""
from __future__ import annotations

import inspect

import optax

from jaxnn.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")


@OPTIMIZERS.register("sgd")
def sgd(learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False):
    """Stochastic gradient descent, with optional (Nesterov) momentum."""
    return optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov)


@OPTIMIZERS.register("rmsprop")
def rmsprop(learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
            epsilon: float = 1e-7, centered: bool = False):
    """RMSprop (Tieleman & Hinton 2012) as Keras defines it: eps outside the square root, 1e-7."""
    return optax.rmsprop(learning_rate, decay=rho, eps=epsilon, eps_in_sqrt=False,
                         centered=centered, momentum=momentum or None)


@OPTIMIZERS.register("adam")
def adam(learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
         epsilon: float = 1e-7, amsgrad: bool = False):
    """Adam (Kingma & Ba 2015) with Keras's defaults; `amsgrad=True` for AMSGrad."""
    if amsgrad:
        return optax.amsgrad(learning_rate, b1=beta_1, b2=beta_2, eps=epsilon)
    return optax.adam(learning_rate, b1=beta_1, b2=beta_2, eps=epsilon)


def get(spec, **options) -> optax.GradientTransformation:
    """An optax transformation from a name plus options, or a transformation as it is."""
    if isinstance(spec, optax.GradientTransformation):
        if options:
            raise ValueError(f"options {sorted(options)} only apply to optimizer names, not to a transformation")
        return spec
    factory = OPTIMIZERS.get(spec)
    allowed = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for optimizer {spec!r}; allowed: {', '.join(allowed)}")
    return factory(**options)


def names() -> list[str]:
    return OPTIMIZERS.names()
