"""The `sweep` config section: the members of a classify run, trained at once along a member axis.

    config.sweep = dict(seeds=4, learning_rate=(1e-3, 3e-3))   # 8 members: each seed with each rate

`seeds` (default 1) gives the member seeds `seed + i` for i < seeds; every other field names an optimizer
hyperparameter with a tuple of values (empty: not swept). The members are the product of the seeds and the
value lists, seeds outermost. A swept hyperparameter must be one the optimizer injects (`optax.inject_hyperparams`;
jaxnn's named optimizers inject `learning_rate`) and not follow a schedule; a `constant` schedule is the plain
rate, so a sweep leaves it out. A sweep runs on one device, for the classify task only.
"""
from __future__ import annotations

import itertools

import ml_collections

from jaxnn import validation

SWEEP_DEFAULTS = dict(seeds=1, learning_rate=())


def sweep_options(config: ml_collections.ConfigDict) -> dict:
    """`config.sweep` over its defaults, checked: `seeds` a positive int, each hyperparameter a list of numbers."""
    given = config.get("sweep") or {}
    validation.require("sweep", given, isinstance(given, (dict, ml_collections.ConfigDict)),
                       "a dict of fields such as dict(seeds=8, learning_rate=(1e-3, 3e-3))")
    options = {**SWEEP_DEFAULTS, **(given.to_dict() if isinstance(given, ml_collections.ConfigDict) else given)}
    validation.positive_int("sweep.seeds", options["seeds"])
    for name, values in options.items():
        if name != "seeds":
            validation.require(f"sweep.{name}", values, isinstance(values, (tuple, list)) and all(
                validation.is_number(v) for v in values), "a list of numbers, e.g. [1e-3, 3e-3] (empty: not swept)")
    return options


def hyperparams(options: dict) -> dict:
    """The swept hyperparameters of checked `options`: {name: values}, the empty lists left out."""
    return {name: tuple(values) for name, values in options.items() if name != "seeds" and len(values)}


def is_sweep(options: dict) -> bool:
    return options["seeds"] > 1 or bool(hyperparams(options))


def members(options: dict, seed: int) -> list[dict]:
    """One `{"seed": s, "hyperparams": {name: value}}` per member, seeds outermost; `seed` is the config's."""
    swept = hyperparams(options)
    return [{"seed": s, "hyperparams": dict(zip(swept, values))}
            for s, *values in itertools.product(range(seed, seed + options["seeds"]), *swept.values())]


def member_hyperparams(member_list: list[dict]) -> dict | None:
    """Trainer.init's `hyperparams`: {name: [one value per member]}, or None when nothing is swept."""
    names = member_list[0]["hyperparams"]
    return {name: [m["hyperparams"][name] for m in member_list] for name in names} or None


def check_sweep(options: dict, optimizer_section: dict, build_optimizer, settable, mesh) -> None:
    """Refuse a sweep the run cannot do: a mesh of several devices, a hyperparameter not among the ones the
    optimizer lets set (`settable`: injected, no schedule), a value the optimizer refuses. `optimizer_section`
    is the one the members share (a bare constant schedule already left out:
    `optimizers.without_constant_schedule`)."""
    if mesh.devices.size > 1:
        raise ValueError(f"a sweep trains its members on one device, but the mesh {dict(mesh.shape)} spans "
                         f"{mesh.devices.size}: set mesh.data=1 and mesh.fsdp=1")
    for name, values in hyperparams(options).items():
        validation.require(f"sweep.{name}", name, name in settable,
                           f"a hyperparameter the optimizer injects without a schedule: "
                           f"{', '.join(settable) or 'none'}")
        for value in values:
            try:
                build_optimizer({**optimizer_section, name: value})
            except ValueError as e:
                raise ValueError(f"sweep.{name} {value!r}: {e}") from None
