"""`dry_run(config)`: compile a config's train step for its mesh on abstract shapes and say what a step costs.

    python train.py --config configs/fashion_mnist_seed.py --config.mesh.fsdp=4 --dry_run --device_memory_gb 16

Reads no data (the shapes come from the dataset spec) and computes nothing: the step is lowered on
`jax.ShapeDtypeStruct`s carrying the mesh's shardings and compiled, so simulated devices
(`XLA_FLAGS=--xla_force_host_platform_device_count=N`) can stand in for a cluster's. With in-memory data,
each device also holds the whole split (`Trainer` docs), which is not counted here.
"""
from __future__ import annotations

import time

import jax
import ml_collections

from jaxnn.config import NOMINAL_STEPS, build
from jaxnn.models import summary
from jaxnn.tasks.classify import build_trainer
from jaxnn.training.members import member_spec
from jaxnn.validation import positive_number

GIB = 2**30


def dry_run(config: ml_collections.ConfigDict, *, device_memory_gb: float | None = None, print_fn=print) -> dict:
    """Compile the train step and print its compile time, per-device memory, FLOPs and parameter shardings.

    Returns the figures; raises ValueError (one line) when a step needs more memory per device than
    `device_memory_gb` GiB, or than the device's own memory when it reports one.
    """
    if device_memory_gb is not None:  # checked before the compile, not after it
        positive_number("--device_memory_gb", device_memory_gb)
    print_fn = print_fn if jax.process_index() == 0 else None  # one report for a multi-process run
    experiment = build(config)
    spec, batch_size = experiment.data_spec, experiment.train["batch_size"]
    trainer = build_trainer(experiment, total_steps=NOMINAL_STEPS)  # the schedules' length changes no shape
    members = len(experiment.members) or None  # a sweep: all members' step, each with its own batch
    state = trainer.abstract_state(spec.input_shape, members)
    lead = (members, batch_size) if members else (batch_size,)
    batch = {"inputs": jax.ShapeDtypeStruct((*lead, *spec.input_shape), spec.input_dtype),
             "targets": jax.ShapeDtypeStruct((*lead, *spec.target_shape), spec.target_dtype)}
    started = time.perf_counter()
    compiled = trainer.lower_train_step(state, batch).compile()
    seconds = time.perf_counter() - started
    memory = compiled.memory_analysis()
    per_device = (memory.argument_size_in_bytes + memory.output_size_in_bytes - memory.alias_size_in_bytes
                  + memory.temp_size_in_bytes + memory.generated_code_size_in_bytes)
    cost = compiled.cost_analysis()
    flops = float((cost[0] if isinstance(cost, (list, tuple)) else cost).get("flops", 0.0))
    devices = trainer.mesh.size
    figures = dict(devices=devices, compile_seconds=seconds, bytes_per_device=per_device,
                   flops_per_device=flops, flops_per_step=flops * devices)
    if print_fn is not None:
        mesh = " x ".join(f"{axis}={size}" for axis, size in trainer.mesh.shape.items())
        one = member_spec(state) if members else state  # the table of one member
        summary(trainer.model, spec.input_shape, params=one.params, state=one.model_state, print_fn=print_fn,
                policy=trainer.policy)
        print_fn("\n".join([
            f"Dry run: mesh {mesh} ({devices} {trainer.mesh.devices.flat[0].platform} devices), global batch "
            f"{batch_size} ({batch_size // devices} per device)"
            + (f"; {members} sweep members in one step" if members else ""),
            f"Compile time: {seconds:.2f} s",
            f"Memory per device: {per_device / 2**20:.2f} MiB (arguments {memory.argument_size_in_bytes / 2**20:.2f}, "
            f"outputs {memory.output_size_in_bytes / 2**20:.2f}, aliased {memory.alias_size_in_bytes / 2**20:.2f}, "
            f"temporaries {memory.temp_size_in_bytes / 2**20:.2f}, code {memory.generated_code_size_in_bytes / 2**20:.2f})",
            f"FLOPs per step: {flops:.4g} per device, {flops * devices:.4g} in all"]))
    limit, source = _memory_limit(device_memory_gb, trainer.mesh)
    if limit is not None and per_device > limit:
        raise ValueError(f"a train step needs {per_device / GIB:.3g} GiB per device, more than {source}: use more "
                         f"fsdp devices, a smaller train.batch_size or train.accumulate_steps")
    return figures


def _memory_limit(device_memory_gb, mesh) -> tuple[float | None, str]:
    if device_memory_gb is not None:  # checked by dry_run before the compile
        return device_memory_gb * GIB, f"--device_memory_gb={device_memory_gb:g}"
    local = next(d for d in mesh.devices.flat if d.process_index == jax.process_index())  # stats are local only
    limit = (local.memory_stats() or {}).get("bytes_limit")
    return limit, f"the device's {limit / GIB:.3g} GiB" if limit else ""
