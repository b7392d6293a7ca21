"""Mixed-precision policies (Keras's names): compute dtype, float32 parameters, float32 losses.

    policy = get_policy("mixed_bfloat16")   # compute in bfloat16, keep float32 params
    policy = get_policy("mixed_float16")    # float16 compute with dynamic loss scaling

Parameters and optimizer state always stay float32: the step casts a float32
copy of the parameters and the floating inputs to the compute dtype, and the
model's outputs back to float32 before the loss, so losses, metrics and
gradient sums are float32. float16's narrow range needs loss scaling: the loss
is multiplied by a scale before differentiation, gradients are divided by it,
and a step whose gradients overflow is skipped and halves the scale (Keras's
LossScaleOptimizer: start 2**15, double after 2000 good steps).
"""
from __future__ import annotations

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp

INITIAL_LOSS_SCALE = 2.0**15
LOSS_SCALE_GROWTH_STEPS = 2000


@dataclasses.dataclass(frozen=True)
class Policy:
    """A named precision policy: the dtype layers compute in, and whether losses are scaled."""

    name: str
    compute_dtype: jnp.dtype
    loss_scaling: bool = False

    @property
    def is_mixed(self) -> bool:
        return self.compute_dtype != jnp.float32

    def describe(self) -> str:
        """One line for `summary`: the policy and its dtypes."""
        scaling = ", dynamic loss scaling" if self.loss_scaling else ""
        return (f"Precision policy: {self.name} (compute {jnp.dtype(self.compute_dtype).name}, "
                f"params float32, loss float32{scaling})")

    def cast_to_compute(self, tree):
        """Floating leaves of `tree` in the compute dtype (no-op for float32)."""
        if not self.is_mixed:
            return tree
        return jax.tree_util.tree_map(
            lambda a: a.astype(self.compute_dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)

    def cast_to_output(self, tree):
        """Floating leaves of `tree` back in float32, for losses and metrics."""
        if not self.is_mixed:
            return tree
        return jax.tree_util.tree_map(
            lambda a: a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


POLICIES = {p.name: p for p in (Policy("float32", jnp.float32),
                                 Policy("mixed_bfloat16", jnp.bfloat16),
                                 Policy("mixed_float16", jnp.float16, loss_scaling=True))}


def get_policy(spec) -> Policy:
    """A Policy from its name (`float32`, `mixed_bfloat16`, `mixed_float16`) or as it is."""
    if isinstance(spec, Policy):
        return spec
    if spec not in POLICIES:
        raise ValueError(f"precision policy must be one of {', '.join(POLICIES)}, got {spec!r}")
    return POLICIES[spec]


@flax.struct.dataclass
class LossScale:
    """Dynamic loss scale: the current `scale` and the count of finite steps since it last changed."""

    scale: jax.Array
    good_steps: jax.Array

    @classmethod
    def create(cls) -> "LossScale":
        return cls(scale=jnp.asarray(INITIAL_LOSS_SCALE, jnp.float32), good_steps=jnp.zeros((), jnp.int32))

    def adjust(self, grads_finite: jax.Array) -> "LossScale":
        """Halve on overflow (not below 1); double after LOSS_SCALE_GROWTH_STEPS finite steps."""
        grow = grads_finite & (self.good_steps + 1 >= LOSS_SCALE_GROWTH_STEPS)
        scale = jnp.where(grads_finite, jnp.where(grow, self.scale * 2, self.scale), jnp.maximum(self.scale / 2, 1.0))
        good = jnp.where(grads_finite & ~grow, self.good_steps + 1, 0)
        return LossScale(scale=scale, good_steps=good.astype(jnp.int32))
