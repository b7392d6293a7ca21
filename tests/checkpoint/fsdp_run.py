"""Helper of test_sharded.py, run with N simulated devices: `save DIR` trains 3 SGD steps of an FSDP-sharded
state and checkpoints it; `resume DIR` restores onto this process's devices (mesh fsdp=N), checks the
placement, and trains 3 more steps; `whole DIR` trains 6 steps. Prints one JSON line: losses, fingerprints, the state's bytes' digest."""
import hashlib
import json
import sys

import jax
import numpy as np

from jaxnn import checkpoint as ckpt, distributed, layers, models
from jaxnn.training.trainer import Trainer

mode, directory = sys.argv[1], sys.argv[2]
mesh = distributed.make_mesh(dict(data=1, fsdp=-1))
trainer = Trainer(models.Sequential([layers.Dense(16, activation="relu"), layers.Dense(8)]), optimizer="sgd",
                  mesh=mesh, min_shard_bytes=64)
state = trainer.init(jax.random.key(0), (24,))  # each leaf placed by the trainer's state_shardings
shardings = trainer.state_shardings(state)
rng = np.random.default_rng(0)
x = jax.device_put(rng.normal(size=(32, 24)).astype(np.float32), distributed.batch_sharding(mesh))
y = jax.device_put(rng.integers(0, 8, 32).astype(np.int32), distributed.batch_sharding(mesh))
manager = ckpt.CheckpointManager(directory)
losses = []
if mode == "resume":
    flat, meta = manager.restore(lambda e: ckpt.targets(state)[e["path"]])
    state = ckpt.unflatten(flat, state)
    placed = jax.tree.map(lambda a, s: a.sharding.is_equivalent_to(s, a.ndim), state, shardings)
    assert all(jax.tree.leaves(placed)), placed
    digest = hashlib.sha256(b"".join(a.tobytes() for a in ckpt.flatten(state).values())).hexdigest()
fsdp_leaves = [p for p, a in ckpt.leaves(state).items() if not a.sharding.is_fully_replicated]
for _ in range(6 if mode == "whole" else 3):
    state, stats = trainer.train_step(state, {"inputs": x, "targets": y})
    losses.append(float(stats["loss"]["total"] / stats["loss"]["count"]))
if mode == "save":
    manager.save(3, state, {"note": "fsdp"})
    manager.close()
    digest = hashlib.sha256(b"".join(a.tobytes() for a in ckpt.flatten(state).values())).hexdigest()
print(json.dumps({"losses": losses, "digest": digest if mode != "whole" else None, "sharded": fsdp_leaves, "devices": jax.device_count(),
                  "fingerprints": ckpt.summarize(list(ckpt.leaves(state).values()))[0]}))
