"""The mesh and distributed config sections (checked before any data) and `train.py --dry_run`."""
import os
import subprocess
import sys

import pytest

from jaxnn.config import build
from config_files import load_config, set_field
from test_distributed import ROOT


@pytest.mark.parametrize("path, value, match", [
    ("mesh.data", 2, r"^mesh.data=2 x mesh.fsdp=1 needs 2 devices; 1 are available: use at most 1 devices in all, "
                     r"or -1$"),
    ("mesh.model", 2, "^unknown field mesh.model; allowed: data, fsdp, rules, min_shard_bytes$"),
    ("mesh.min_shard_bytes", -1, "^mesh.min_shard_bytes must be an integer >= 0, got -1$"),
    ("mesh.rules", ("dense",), r"^mesh.rules must be \(path regex, partition spec\) pairs"),
    ("mesh.rules", (("dense_1/kernel", (None, None, "fsdp")),),
     r"^sharding rule 'dense_1/kernel' gives \(None, None, 'fsdp'\) for params/dense_1/kernel of shape \(100, 10\): "
     r"3 axes for a rank-2 leaf$"),
    ("distributed.watchdog_s", -1, r"^distributed.watchdog_s must be a number of seconds >= 0 \(0: no watchdog\)"),
    ("distributed.heartbeat_timeout_s", 0, "^distributed.heartbeat_timeout_s must be a positive number, got 0.0$"),
    ("distributed.timeout", 1, "^unknown field distributed.timeout; allowed: initialization_timeout_s"),
])
def test_bad_mesh_and_distributed_fields_are_one_line(path, value, match):
    with pytest.raises(ValueError, match=match):
        build(set_field(load_config("fashion_mnist_seed"), path, value))


def test_configs_without_mesh_sections_run_on_one_device():
    config = load_config("fashion_mnist_seed")
    with config.unlocked():
        del config["mesh"], config["distributed"]
    experiment = build(config)
    assert dict(experiment.mesh.shape) == {"data": 1, "fsdp": 1} and experiment.distributed["watchdog_s"] == 600


def train_py(devices: int, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAXNN_COMPILATION_CACHE="/nonexistent/never-written")
    return subprocess.run([sys.executable, "train.py", "--config=configs/fashion_mnist_seed.py", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, line", [
    (["--config.mesh.data=4", "--config.train.batch_size=30"],
     "error: train.batch_size must be divisible by the data-parallel size 4 (mesh.data=4 x mesh.fsdp=1), got 30"),
    (["--config.mesh.fsdp=-1", "--config.eval.batch_size=1001"],
     "error: eval.batch_size must be divisible by the data-parallel size 4 (mesh.data=1 x mesh.fsdp=4), got 1001"),
    (["--config.mesh.data=3", "--config.mesh.fsdp=2"],
     "error: mesh.data=3 x mesh.fsdp=2 needs 6 devices; 4 are available: use at most 4 devices in all, or -1"),
])
def test_a_mesh_or_batch_that_cannot_be_met_is_one_line_before_any_data(tmp_path, args, line):
    proc = train_py(4, f"--workdir={tmp_path / 'run'}", "--config.dataset.data_dir=/nonexistent", *args)
    assert (proc.returncode, proc.stderr.strip()) == (2, line)  # a config the mesh cannot meet: a usage error (docs/errors.md)
    assert not (tmp_path / "run").exists()


def test_dry_run_prints_memory_flops_compile_time_and_shardings_and_fails_on_a_small_device():
    proc = train_py(4, "--dry_run", "--config.mesh.fsdp=4", "--config.mesh.min_shard_bytes=1024",
                    "--config.dataset.data_dir=/nonexistent")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "Sharding over mesh data=1 x fsdp=4:" in out
    assert " dense/kernel    (784, 100)  fsdp on axis 0" in out and " dense/bias      (100,)      replicated" in out
    assert "Dry run: mesh data=1 x fsdp=4 (4 cpu devices), global batch 32 (8 per device)" in out
    assert "Compile time: " in out and "Memory per device: " in out
    flops = float(out.split("FLOPs per step: ")[1].split(" per device")[0])
    # the matmuls of one device's 8 examples (2 FLOPs per multiply-add): forward and the kernel's gradient
    # for the first layer, also the input's gradient for the second; elementwise work adds a little
    matmuls = 2 * 8 * (2 * 784 * 100 + 3 * 100 * 10)
    assert matmuls <= flops < 1.2 * matmuls

    tiny = train_py(4, "--dry_run", "--config.mesh.fsdp=4", "--device_memory_gb=1e-6", "--quiet")
    assert tiny.returncode == 2 and tiny.stdout == ""
    assert tiny.stderr.startswith("error: a train step needs ") and tiny.stderr.count("\n") == 1
    assert "GiB per device, more than --device_memory_gb=1e-06: use more fsdp devices" in tiny.stderr


def test_a_bad_device_memory_is_refused_before_the_compile():
    proc = train_py(1, "--dry_run", "--device_memory_gb=-1")
    assert proc.returncode == 2 and proc.stdout == ""  # no summary: nothing was compiled
    assert proc.stderr == "error: --device_memory_gb must be a positive number, got -1.0\n"


def test_dry_run_of_a_two_process_run_reports_once():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    proc = subprocess.run([sys.executable, "-m", "jaxnn.launch", "--num_processes", "2", "--", "train.py",
                           "--config=configs/fashion_mnist_seed.py", "--config.mesh.fsdp=-1", "--dry_run"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [line for line in proc.stdout.splitlines() if "Dry run: mesh" in line]
    assert reports == ["[0] Dry run: mesh data=1 x fsdp=2 (2 cpu devices), global batch 32 (16 per device)"]


def test_dry_run_of_a_sweep_compiles_every_members_step_and_keeps_a_warmup_schedule():
    from jaxnn.dry_run import dry_run

    config = set_field(load_config("fashion_mnist_seed"), "optimizer.schedule",
                       dict(name="warmup_cosine", warmup_steps=400))
    one = dry_run(config, print_fn=None)
    lines = []
    three = dry_run(set_field(config, "sweep", dict(seeds=3)), print_fn=lines.append)
    assert three["flops_per_step"] == pytest.approx(3 * one["flops_per_step"], rel=0.01)
    assert three["bytes_per_device"] > 2.5 * one["bytes_per_device"]
    assert "global batch 32 (32 per device); 3 sweep members in one step" in lines[-1]
    assert "Total params: 79,510" in "\n".join(lines)  # the table of one member
