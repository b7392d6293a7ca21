"""Sharded checkpoints on simulated devices: a 4-device FSDP state restores bit-exact onto 1 and onto 8 devices
with the new mesh's shardings and trains on as an uninterrupted run does; a fingerprint does not depend on the
sharding."""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
FSDP_RUN = pathlib.Path(__file__).with_name("fsdp_run.py")


def _python(devices: int, *args, code: str | None = None) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", PYTHONPATH=str(ROOT))
    command = [sys.executable, "-c", textwrap.dedent(code)] if code else [sys.executable, str(FSDP_RUN), *args]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_a_4_device_fsdp_checkpoint_restores_onto_1_and_8_devices_and_training_continues(tmp_path):
    saved = _python(4, "save", tmp_path / "ckpt")
    whole = _python(4, "whole", tmp_path / "whole")  # 6 steps without a checkpoint
    assert saved["sharded"] == ["params/dense/bias", "params/dense/kernel", "params/dense_1/kernel"]
    for devices in (1, 8):
        resumed = _python(devices, "resume", tmp_path / "ckpt")
        assert resumed["digest"] == saved["digest"]  # every leaf's bytes as saved
        assert resumed["sharded"] == (saved["sharded"] if devices > 1 else [])
        np.testing.assert_allclose(resumed["losses"], whole["losses"][3:], rtol=0, atol=1e-6)  # SGD: to rounding


def test_a_fingerprint_is_the_same_on_1_2_and_4_devices_and_sees_every_bit():
    code = """
        import json
        import jax, jax.numpy as jnp, numpy as np
        from jax.sharding import NamedSharding, PartitionSpec as P
        from jaxnn.checkpoint import summarize
        rng = np.random.default_rng(0)
        arrays = [rng.normal(size=(8, 12)).astype(np.float32), rng.normal(size=(8, 4)).astype(jnp.bfloat16),
                  rng.integers(-9, 9, (4, 8)).astype(np.int8), np.array([True, False, True, True])]
        out = []
        for n in (1, 2, 4):
            mesh = jax.make_mesh((n,), ("x",), devices=jax.devices()[:n], axis_types=(jax.sharding.AxisType.Auto,))
            for spec in (P(), P("x")):
                out.append(summarize([jax.device_put(a, NamedSharding(mesh, spec)) for a in arrays])[0])
        flipped = arrays[0].copy()
        flipped.view(np.uint32)[3, 5] ^= 1
        swapped = arrays[0].copy()
        swapped[0, [0, 1]] = swapped[0, [1, 0]]
        out.append(summarize([flipped, swapped, -0.0 * np.ones(3, np.float32), np.zeros(3, np.float32)])[0])
        print(json.dumps(out))
    """
    *placed, other = _python(4, code=code)
    assert all(p == placed[0] for p in placed)
    assert other[0] != placed[0][0] and other[1] != placed[0][0] and other[2] != other[3]
