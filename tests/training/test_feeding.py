"""Trainer.fit and evaluate fed from a streaming source: the in-memory History bit for bit, every evaluated
example counted once, exact mid-epoch resume, one-line errors; 2 processes each read only their rows and
their checkpoint resumes in 1 process."""
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from fit_helpers import blobs, classifier, params
from test_checkpointing import _resumable, _sigterm_at

from jaxnn.data.streaming import PREFETCH, ArraySource
from jaxnn.training.loop import TrainingInterrupted

ROOT = pathlib.Path(__file__).resolve().parents[2]


def source(x, y):
    return ArraySource({"inputs": x, "targets": y})


def fit(trainer, data, **kw):
    return trainer.fit(trainer.init(0, (2,)), *data, epochs=3, batch_size=32, verbose=0, **kw)


@pytest.mark.parametrize("validation, check_finite", [("split", False), ("source", True), ("arrays", False)])
def test_streamed_fit_is_the_in_memory_fit_bit_for_bit(validation, check_finite):
    x, y = blobs()
    kw = dict(validation_split=0.2) if validation == "split" else dict(validation_data=(x[480:], y[480:]))
    streamed = dict(kw, validation_data=source(x[480:], y[480:])) if validation == "source" else kw
    n = 600 if validation == "split" else 480
    want_state, want = fit(classifier(check_finite=check_finite), (x[:n], y[:n]), **kw)
    got_state, got = fit(classifier(check_finite=check_finite), (source(x[:n], y[:n]),), **streamed)
    assert got.history == want.history and len(got.history["val_loss"]) == 3
    for a, b in zip(params(got_state), params(want_state)):
        np.testing.assert_array_equal(a, b)


def test_evaluate_a_source_counts_every_example_once():
    x, y = blobs(203)
    trainer = classifier()
    state = trainer.init(0, (2,))
    got = trainer.evaluate(state, source(x, y), batch_size=32)  # 7 batches, the last with 11 examples
    assert got == trainer.evaluate(state, x, y, batch_size=32)
    probs = trainer.predict(state, x)
    assert got["accuracy"] == pytest.approx(np.mean(probs.argmax(-1) == y), abs=1e-6)
    assert got["loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(203), y])), rel=1e-5)


# Mid-epoch 1 one step per dispatch; mid-epoch 3 in chunks of 3 (cut at the checkpoint's every 5 steps).
@pytest.mark.parametrize("stop_step, steps_per_dispatch, stopped_at", [(7, 1, 7), (37, 3, 38)])
def test_streamed_mid_epoch_resume_is_bit_identical(tmp_path, stop_step, steps_per_dispatch, stopped_at):
    x, y = blobs()
    data = (source(x, y),)
    whole_state, whole = fit(classifier(), data, validation_split=0.2, callbacks=_resumable(tmp_path / "whole"))
    with pytest.raises(TrainingInterrupted, match=f"at step {stopped_at} "):
        fit(classifier(), data, validation_split=0.2, callbacks=_resumable(tmp_path / "cut", [_sigterm_at(stop_step)]),
            steps_per_dispatch=steps_per_dispatch)
    state, history = fit(classifier(), data, validation_split=0.2, callbacks=_resumable(tmp_path / "cut"))
    assert history.history == whole.history
    for a, b in zip(params(state), params(whole_state)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("x, kw, message", [
    (source(*blobs(64)), dict(y=np.zeros(64)), "y must be None when x is a streaming source"),
    (source(*blobs(64)), dict(sample_weight=np.ones(64)), "give per-example weights as its 'weights' column"),
    (ArraySource({"x": blobs(64)[0], "y": blobs(64)[1]}), {},
     r"x must read dicts with keys 'inputs', 'targets' and optionally 'weights' .*got \['x', 'y'\]"),
    (source(*blobs(20)), {}, "batch_size 32 is larger than the 20 training examples"),
])
def test_bad_streamed_fit_is_one_line(x, kw, message):
    trainer = classifier()
    with pytest.raises(ValueError, match=message):
        trainer.fit(trainer.init(0, (2,)), x, kw.pop("y", None), batch_size=32, verbose=0, **kw)


TWO_PROCESS_SCRIPT = """
    import json, os, signal, sys
    import numpy as np
    from jaxnn import distributed
    distributed.initialize(initialization_timeout_s=60)
    import jax
    from jaxnn import Dense, Sequential, Trainer, optimizers
    from jaxnn.data.streaming import PREFETCH, ArraySource
    from jaxnn.training.callbacks import LambdaCallback
    from jaxnn.training.checkpointing import ModelCheckpoint
    from jaxnn.training.loop import TrainingInterrupted

    class Counting(ArraySource):
        def read(self, indices):
            seen.extend(int(i) for i in indices)
            return super().read(indices)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2)).astype(np.float32)
    y = (x[:, 0] > x[:, 1]).astype(np.int32)
    seen = []
    mesh = distributed.make_mesh({"data": -1})
    trainer = Trainer(Sequential([Dense(8, "relu"), Dense(2, "softmax")]), optimizer=optimizers.get("sgd", learning_rate=0.1),
                      mesh=mesh)
    stop = int(sys.argv[2])
    def kill(run, batch):
        if run.step == stop:
            os.kill(os.getpid(), signal.SIGTERM)
    callbacks = [ModelCheckpoint(sys.argv[1], monitor="loss", print_fn=None)]
    callbacks += [LambdaCallback(on_step_end=kill)] if stop else []
    try:
        state, _ = trainer.fit(trainer.init(0, (2,)), Counting({"inputs": x, "targets": y}), epochs=2,
                               batch_size=16, verbose=0, log_every_steps=1, callbacks=callbacks,
                               steps_per_dispatch=1 if stop else "auto")
        out = [np.asarray(a).tolist() for a in jax.tree_util.tree_leaves(state.params)]
    except TrainingInterrupted:
        out = None
    print(json.dumps(dict(process=jax.process_index(), count=jax.process_count(), seen=seen, params=out)))
"""


def _run(*args, processes=1):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", PYTHONPATH=str(ROOT))
    launch = [sys.executable, "-m", "jaxnn.launch", "--num_processes", str(processes), "--"] if processes > 1 else [
        sys.executable]
    proc = subprocess.run([*launch, "-c", textwrap.dedent(TWO_PROCESS_SCRIPT), *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return [json.loads(line.split("] ", 1)[-1]) for line in proc.stdout.splitlines() if "{" in line]


@pytest.mark.slow
def test_two_processes_read_their_rows_and_their_checkpoint_resumes_in_one(tmp_path):
    stop = 30  # epoch 2, step 5 of 25
    whole = _run(tmp_path / "whole", 0)[0]
    two = _run(tmp_path / "cut", stop, processes=2)
    one = _run(tmp_path / "cut", 0)[0]
    assert sorted(r["process"] for r in two) == [0, 1] and {r["count"] for r in two} == {2} and one["count"] == 1
    # Each run's first read is fit's one-example check; then the global batches in order, from the position on.
    first, second = (r["seen"][1:] for r in sorted(two, key=lambda r: r["process"]))
    assert len(first) == len(second) and 8 * stop <= len(first) <= 8 * (stop + PREFETCH)  # prefetched ahead
    batches = [first[i * 8:(i + 1) * 8] + second[i * 8:(i + 1) * 8] for i in range(stop)]  # each its own rows
    assert [i for b in batches for i in b] + one["seen"][1:] == whole["seen"][1:]  # together: the whole order
    for a, b in zip(one["params"], whole["params"]):  # SGD over 2 processes rounds like 1 to ~1 ulp per step
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
