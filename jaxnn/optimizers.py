"""Config names -> optax GradientTransformations and learning-rate schedules, with Keras's defaults.

    get("adam", learning_rate=1e-3)
    get("adamw", learning_rate=1e-3, weight_decay=0.004, global_clipnorm=1.0,
        schedule={"name": "warmup_cosine", "warmup_steps": 100}, total_steps=5000)

A named optimizer is wrapped in `optax.inject_hyperparams`, so its learning
rate lives in the optimizer state: the fit loop reads it for History's `lr`
and ReduceLROnPlateau can lower it. Any optax GradientTransformation passes
through unchanged.
"""
from __future__ import annotations

import functools
import inspect
import math

import jax
import optax

from jaxnn import validation
from jaxnn.registry import Registry

OPTIMIZERS: Registry = Registry("optimizer")
SCHEDULES: Registry = Registry("schedule")


@OPTIMIZERS.register("sgd")
def sgd(learning_rate: float = 0.01, momentum: float = 0.0, nesterov: bool = False):
    """Stochastic gradient descent, with optional (Nesterov) momentum."""
    return optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov)


@OPTIMIZERS.register("rmsprop")
def rmsprop(learning_rate: float = 0.001, rho: float = 0.9, momentum: float = 0.0,
            epsilon: float = 1e-7, centered: bool = False):
    """RMSprop (Tieleman & Hinton 2012) as Keras defines it: lr * g / sqrt(v + epsilon), epsilon 1e-7."""
    return optax.rmsprop(learning_rate, decay=rho, eps=epsilon, eps_in_sqrt=True,
                         centered=centered, momentum=momentum or None)


@OPTIMIZERS.register("adam")
def adam(learning_rate: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
         epsilon: float = 1e-7, amsgrad: bool = False):
    """Adam (Kingma & Ba 2015) with Keras's defaults; `amsgrad=True` for AMSGrad."""
    if amsgrad:
        return optax.amsgrad(learning_rate, b1=beta_1, b2=beta_2, eps=epsilon)
    return optax.adam(learning_rate, b1=beta_1, b2=beta_2, eps=epsilon)


@OPTIMIZERS.register("adamw")
def adamw(learning_rate: float = 0.001, weight_decay: float = 0.004, beta_1: float = 0.9,
          beta_2: float = 0.999, epsilon: float = 1e-7):
    """AdamW (Loshchilov & Hutter 2019): Adam plus decoupled weight decay, Keras's defaults."""
    return optax.adamw(learning_rate, b1=beta_1, b2=beta_2, eps=epsilon, weight_decay=weight_decay)


# Schedules: `learning_rate` is the peak (or initial) value; `total_steps` is the
# whole run's step count, the default length of every decay (0 means "the whole run").
@SCHEDULES.register("constant")
def constant(learning_rate: float, total_steps: int):
    """The same learning rate at every step."""
    del total_steps
    return optax.constant_schedule(learning_rate)


@SCHEDULES.register("exponential_decay")
def exponential_decay(learning_rate: float, total_steps: int, decay_steps: int = 0, decay_rate: float = 0.96,
                      staircase: bool = False):
    """lr * decay_rate ** (step / decay_steps); `staircase` floors the exponent (step decay)."""
    return optax.exponential_decay(learning_rate, decay_steps or total_steps, decay_rate, staircase=staircase)


SCHEDULES.register("step_decay", functools.partial(exponential_decay, staircase=True))


@SCHEDULES.register("warmup_cosine")
def warmup_cosine(learning_rate: float, total_steps: int, warmup_steps: int = 0, decay_steps: int = 0,
                  init_value: float = 0.0, end_value: float = 0.0):
    """Linear warm-up from `init_value` to lr over `warmup_steps`, then cosine decay to `end_value`."""
    whole_run = " (the whole run's steps)" if not decay_steps else ""
    decay_steps = decay_steps or total_steps
    if not 0 <= warmup_steps < decay_steps:
        raise ValueError(f"schedule warmup_steps must be in [0, decay_steps={decay_steps}{whole_run}), got "
                         f"{warmup_steps}")
    return optax.warmup_cosine_decay_schedule(init_value, learning_rate, warmup_steps, decay_steps, end_value)


@SCHEDULES.register("one_cycle")
def one_cycle(learning_rate: float, total_steps: int, transition_steps: int = 0, pct_start: float = 0.3,
              div_factor: float = 25.0, final_div_factor: float = 1e4):
    """Smith's one-cycle policy: cosine up to lr over `pct_start` of the cycle, then down to lr/div/final_div."""
    return optax.cosine_onecycle_schedule(transition_steps or total_steps, learning_rate, pct_start=pct_start,
                                          div_factor=div_factor, final_div_factor=final_div_factor)


# Optimizer options that must be numbers in a range: the test and how an error states it.
_UNIT = (lambda v: 0 <= v < 1, "a number in [0, 1)")
_NON_NEGATIVE = (lambda v: v >= 0, "a non-negative number")
_POSITIVE = (lambda v: 0 < v < math.inf, "a positive finite number")
_RANGES = {"learning_rate": _POSITIVE, "momentum": _UNIT, "beta_1": _UNIT, "beta_2": _UNIT,
           "rho": (lambda v: 0 < v < 1, "a number in (0, 1)"), "epsilon": _NON_NEGATIVE, "weight_decay": _NON_NEGATIVE}


# Schedule options that must be numbers in a range.
_NON_NEGATIVE_FINITE = (lambda v: 0 <= v < math.inf, "a non-negative finite number")
_SCHEDULE_RANGES = {"decay_rate": _POSITIVE, "init_value": _NON_NEGATIVE_FINITE, "end_value": _NON_NEGATIVE_FINITE,
                    "pct_start": (lambda v: 0 < v < 1, "a number in (0, 1)"), "div_factor": _POSITIVE,
                    "final_div_factor": _POSITIVE}


def _check_values(name: str, options: dict, ranges: dict = _RANGES) -> None:
    """One line naming an option that is not a number in its range (a negative learning rate, say)."""
    for field, value in options.items():
        if field in ranges:
            in_range, allowed = ranges[field]
            validation.require(f"{name} {field}", value, validation.is_number(value) and in_range(value), allowed)


def _check_options(kind: str, name: str, fn, options: dict, fixed=()) -> None:
    allowed = [p for p in inspect.signature(fn).parameters if p not in fixed]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for {kind} {name!r}; allowed: {', '.join(allowed)}")


def schedule(name: str, learning_rate: float, total_steps: int = 1, **options) -> optax.Schedule:
    """An optax schedule from its name, peak learning rate, run length in steps and options."""
    factory = SCHEDULES.get(name)
    _check_options("schedule", name, factory, options, fixed=("learning_rate", "total_steps"))
    for field in ("decay_steps", "transition_steps", "warmup_steps"):
        value = options.get(field, 0)
        validation.non_negative_int(f"schedule {field}", value)
    _check_values(f"schedule {name}", {"learning_rate": learning_rate, **options}, {**_RANGES, **_SCHEDULE_RANGES})
    if "staircase" in options:
        validation.require(f"schedule {name} staircase", options["staircase"], isinstance(options["staircase"], bool),
                           "True or False")
    return factory(learning_rate, max(int(total_steps), 1), **options)


def without_constant_schedule(section: dict) -> dict:
    """An optimizer config section without a bare `schedule=dict(name="constant")`: that schedule is the plain
    rate, and without it the rate is an injected hyperparameter that can be set (by ReduceLROnPlateau, per
    sweep member). Any other schedule is kept."""
    schedule = dict(section.get("schedule") or {})
    if schedule.get("name") == "constant" and len(schedule) == 1:
        return {k: v for k, v in section.items() if k != "schedule"}
    return dict(section)


def get(spec, *, schedule_options: dict | None = None, global_clipnorm: float | None = None,
        total_steps: int = 1, **options) -> optax.GradientTransformation:
    """An optax transformation from a name plus options, or a transformation as it is.

    `schedule_options` (`{"name": "warmup_cosine", ...}`) turns `learning_rate`
    into the peak of that schedule over `total_steps`; `global_clipnorm` clips
    gradients by their global norm before the optimizer sees them.
    """
    if isinstance(spec, optax.GradientTransformation):
        if options or schedule_options:
            raise ValueError(f"options {sorted(options)} only apply to optimizer names, not to a transformation")
        tx = spec
    else:
        factory = OPTIMIZERS.get(spec)
        _check_options("optimizer", spec, factory, options)
        _check_values(spec, options)
        if schedule_options:
            sched = dict(schedule_options)
            lr = options.get("learning_rate", inspect.signature(factory).parameters["learning_rate"].default)
            options["learning_rate"] = schedule(sched.pop("name", "constant"), lr, total_steps, **sched)
        static = [p for p in inspect.signature(factory).parameters if p != "learning_rate"]
        tx = optax.inject_hyperparams(factory, static_args=static)(**options)
    if global_clipnorm is not None:
        if not global_clipnorm > 0:
            raise ValueError(f"global_clipnorm must be positive, got {global_clipnorm!r}")
        tx = optax.chain(optax.clip_by_global_norm(global_clipnorm), tx)
    return tx


def _hyperparams_states(opt_state) -> list:
    is_inject = lambda x: isinstance(x, optax.InjectStatefulHyperparamsState)
    return [s for s in jax.tree_util.tree_leaves(opt_state, is_leaf=is_inject) if is_inject(s)]


def learning_rate(opt_state):
    """The learning rate of the last update (a scalar array), or None if the optimizer doesn't expose it."""
    for s in _hyperparams_states(opt_state):
        if "learning_rate" in s.hyperparams:
            return s.hyperparams["learning_rate"]
    return None


def settable_hyperparams(opt_state) -> tuple[str, ...]:
    """The names `set_hyperparam` can set in `opt_state`: injected hyperparameters that follow no schedule."""
    return tuple(name for s in _hyperparams_states(opt_state) for name in s.hyperparams
                 if name not in s.hyperparams_states)


def set_learning_rate(opt_state, value):
    """`opt_state` with a new constant learning rate; ValueError if it follows a schedule or isn't exposed."""
    return set_hyperparam(opt_state, "learning_rate", value)


def set_hyperparam(opt_state, name: str, value):
    """`opt_state` with the injected hyperparameter `name` (e.g. "learning_rate") set to `value` (an array of
    the hyperparameter's shape: one value per member for an ensemble); ValueError if it follows a schedule or
    the optimizer does not inject it."""
    states = [s for s in _hyperparams_states(opt_state) if name in s.hyperparams]
    said = name.replace("_", " ")
    if not states:
        injected = [n for s in _hyperparams_states(opt_state) for n in s.hyperparams]
        if injected:  # built by name: only the learning rate is injected
            raise ValueError(f"the optimizer does not expose its {said}; it injects only {', '.join(injected)} "
                             f"(to set {name}, build the optimizer with optax.inject_hyperparams)")
        raise ValueError(f"the optimizer does not expose its {said}: build it by name "
                         "(jaxnn.optimizers.get) or wrap it in optax.inject_hyperparams")
    if name in states[0].hyperparams_states:
        raise ValueError(f"the {said} follows a schedule and cannot be set (ReduceLROnPlateau and sweeps need "
                         "a constant one)")
    target = states[0]
    old = target.hyperparams[name]
    value = jax.numpy.asarray(value, old.dtype)
    if value.shape != old.shape:
        raise ValueError(f"{name} must have shape {old.shape} (one value per member), got {value.shape}")

    def replace(s):
        return s._replace(hyperparams={**s.hyperparams, name: value}) if s is target else s

    return jax.tree_util.tree_map(replace, opt_state, is_leaf=lambda x: x is target)


def names() -> list[str]:
    """Registered optimizer names."""
    return OPTIMIZERS.names()
