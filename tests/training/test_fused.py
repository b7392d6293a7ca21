"""Fused steps (`steps_per_dispatch`): K steps per compiled call give the History and parameters of one step
per call bit for bit, under every option of the step; chunks end where callbacks need them; "auto" sizes them."""
import jax
import numpy as np
import pytest
from fit_helpers import blobs, classifier, fit, params

from jaxnn import Dense, Dropout, Sequential, Trainer, optimizers
from jaxnn.training import dispatch, programs
from jaxnn.training.callbacks import LambdaCallback
from jaxnn.training.guard import NonFinite


def _same(a, b):
    (state_a, history_a), (state_b, history_b) = a, b
    assert history_a.history == history_b.history
    assert int(state_a.step) == int(state_b.step)
    for x, y in zip(jax.tree_util.tree_leaves((state_a.params, state_a.opt_state, state_a.model_state)),
                    jax.tree_util.tree_leaves((state_b.params, state_b.opt_state, state_b.model_state))):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("options", [
    dict(),
    dict(accumulate_steps=4),
    dict(policy="mixed_float16"),
    dict(check_finite=True),
    dict(per_example=dict(clip_norm=1.0, noise_multiplier=0.5)),
], ids=["plain", "accumulate", "mixed_float16", "check_finite", "dp_sgd"])
def test_fused_chunks_give_the_per_step_history_and_state_bit_for_bit(options):
    # 480 training examples / 32 = 15 steps an epoch: chunks of 4 end with a shorter one (3) every epoch.
    runs = [fit(classifier(**options), epochs=3, steps_per_dispatch=k) for k in (1, 4, 15, "auto")]
    for other in runs[1:]:
        _same(runs[0], other)


def test_sample_weights_and_no_shuffle_fused():
    x, y = blobs(300)
    weights = np.linspace(0.5, 2, 300).astype(np.float32)
    trainer = classifier()
    runs = [trainer.fit(trainer.init(0, (2,)), x, y, epochs=2, batch_size=32, sample_weight=weights, shuffle=False,
                        verbose=0, steps_per_dispatch=k) for k in (1, 5)]
    _same(*runs)


@pytest.mark.parametrize("options", [dict(), dict(check_finite=True), dict(accumulate_steps=4)],
                         ids=["plain", "check_finite", "accumulate"])
def test_chunks_of_several_blocks_give_the_per_step_history_and_state_bit_for_bit(options, monkeypatch):
    # Blocks of 4 (a loop of known length): a chunk of 15 is three blocks and 3 steps one at a time, a chunk
    # of 8 two blocks, the epoch's last chunk of 7 one block and 3 steps.
    monkeypatch.setattr(programs, "BLOCK_STEPS", 4)
    runs = [fit(classifier(**options), epochs=3, steps_per_dispatch=k) for k in (1, 8, 15)]
    for other in runs[1:]:
        _same(runs[0], other)


def test_evaluation_in_blocks_adds_the_batches_in_order(monkeypatch):
    x, y = blobs(300)
    state = classifier().init(0, (2,))
    results = []
    for block_steps in (10**9, 4):  # one loop of every batch; blocks of 4 batches, then the rest one at a time
        monkeypatch.setattr(programs, "BLOCK_STEPS", block_steps)
        results.append(classifier().evaluate(state, x, y, batch_size=8))  # 38 batches: the last one padded
    assert results[0] == results[1]
    probs = classifier().predict(state, x)
    expected = -np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1)))
    np.testing.assert_allclose(results[1]["loss"], expected, rtol=1e-5)


@pytest.mark.parametrize("block_steps", [programs.BLOCK_STEPS, 2])
def test_check_finite_names_the_exact_step_inside_a_chunk(block_steps, monkeypatch):
    monkeypatch.setattr(programs, "BLOCK_STEPS", block_steps)  # 2: the bad step is inside a block of steps 6, 7
    x, y = blobs(320)
    x[6 * 32 + 3, 1] = np.nan  # step 6 (no shuffling) is the first bad one, inside the chunk of steps 4..7
    trainer = Trainer(Sequential([Dense(16, "tanh"), Dense(3, "softmax")]),
                      optimizer=optimizers.get("sgd", learning_rate=0.1), check_finite=True)
    state, history = trainer.fit(trainer.init(0, (2,)), x, y, epochs=2, batch_size=32, shuffle=False, verbose=0,
                                 steps_per_dispatch=4)
    assert history.nonfinite == NonFinite(step=6, epoch=0, what="gradient and loss", path="dense/bias")
    ref, _ = trainer.fit(trainer.init(0, (2,)), x[:6 * 32], y[:6 * 32], epochs=1, batch_size=32, shuffle=False,
                         verbose=0, steps_per_dispatch=1)
    for a, b in zip(params(state), params(ref)):  # the last good parameters: those after step 5
        np.testing.assert_array_equal(a, b)


def test_chunks_end_at_epoch_ends_and_at_every_steps_multiples():
    seen = []
    every_seven = LambdaCallback(on_step_end=lambda run, batch: seen.append((run.step, batch)))
    every_seven.every_steps = 7
    fit(classifier(), [every_seven], epochs=2, steps_per_dispatch=5)  # 15 steps an epoch
    assert seen == [(5, 4), (7, 6), (12, 11), (14, 13), (15, 14),
                    (20, 4), (21, 5), (26, 10), (28, 12), (30, 14)]


def test_one_loop_program_for_every_fused_chunk_length():
    trainer = classifier()
    state, _ = fit(trainer, epochs=2, steps_per_dispatch=4)  # chunks of 4 and 3
    state, _ = fit(trainer, epochs=1, steps_per_dispatch=6)  # 6 and 3
    programs = trainer._compiled("fit", state)
    assert (programs.chunk._cache_size(), programs.step._cache_size()) == (1, 0)


def test_the_running_logs_are_fetched_only_for_a_callback_that_reads_them(monkeypatch):
    from jaxnn.training import loop

    fetched, seen = [], []
    real = loop.running_logs
    monkeypatch.setattr(loop, "running_logs", lambda run, metrics: fetched.append(run.step) or real(run, metrics))
    fit(classifier(), epochs=1, steps_per_dispatch=1, log_every_steps=5)  # 15 steps, no on_log: no waits
    assert fetched == []
    fit(classifier(), [LambdaCallback(on_log=lambda run, logs: seen.append(logs["loss"]))], epochs=1,
        steps_per_dispatch=1, log_every_steps=5)
    assert fetched == [5, 10, 15] and len(seen) == 3


def test_an_unshuffled_fit_runs_the_shuffled_fits_programs():
    trainer = classifier()
    state, _ = fit(trainer, epochs=1, steps_per_dispatch=4)
    x, y = blobs()
    state, _ = trainer.fit(state, x[:480], y[:480], epochs=1, batch_size=32, verbose=0, shuffle=False,
                           steps_per_dispatch=4)
    assert trainer._compiled("fit", state).chunk._cache_size() == 1  # the order was placed as the permutation


def _probe(sizes, one_step_s, chunk_s):
    """Feed `sizes` the probe sequence: compile, time one-step dispatches, compile the loop, time a chunk."""
    probe = dispatch.PROBE_STEPS
    assert (sizes.size, sizes.probing, sizes.timed) == (1, True, False)
    sizes.observe(1, None)
    for _ in range(probe):
        assert (sizes.size, sizes.timed) == (1, True)
        sizes.observe(1, one_step_s)
    assert (sizes.size, sizes.timed) == (probe, False)
    sizes.observe(probe - 1, None)  # cut short by an epoch end: not counted
    sizes.observe(probe, None)
    assert sizes.timed
    sizes.observe(probe, chunk_s)


def test_auto_fuses_for_a_tenth_of_a_second_when_the_loop_is_faster():
    sizes = dispatch.ChunkSizes("auto", steps_per_epoch=1000)
    _probe(sizes, one_step_s=0.001, chunk_s=dispatch.PROBE_STEPS * 0.0005)  # 0.5 ms a step -> 200 steps
    assert (sizes.size, sizes.probing) == (200, False)
    capped = dispatch.ChunkSizes("auto", steps_per_epoch=60)
    _probe(capped, one_step_s=0.001, chunk_s=dispatch.PROBE_STEPS * 1e-5)
    assert capped.size == 60


def test_auto_keeps_one_step_a_dispatch_when_the_loop_is_slower():
    sizes = dispatch.ChunkSizes("auto", steps_per_epoch=1000)  # e.g. convolutions in a loop on CPU
    _probe(sizes, one_step_s=0.01, chunk_s=dispatch.PROBE_STEPS * 0.1)
    assert (sizes.size, sizes.probing) == (1, False)
    assert dispatch.ChunkSizes("auto", steps_per_epoch=1).probing is False
    fixed = dispatch.ChunkSizes(3, steps_per_epoch=60)
    assert (fixed.size, fixed.probing) == (3, False)


def test_auto_keeps_long_steps_at_one_a_dispatch_without_a_loop_probe():
    sizes = dispatch.ChunkSizes("auto", steps_per_epoch=1000)
    sizes.observe(1, None)
    for _ in range(dispatch.PROBE_STEPS):
        sizes.observe(1, 2 * dispatch.LONG_STEP_S)
    assert (sizes.size, sizes.probing) == (1, False)


def test_auto_times_a_slightly_slower_loop_again_and_takes_its_fastest_chunk():
    probe = dispatch.PROBE_STEPS
    sizes = dispatch.ChunkSizes("auto", steps_per_epoch=1000)
    _probe(sizes, one_step_s=0.001, chunk_s=probe * 0.0015)  # a hiccup: 1.5x the one-step time
    assert (sizes.size, sizes.probing, sizes.timed) == (probe, True, True)
    sizes.observe(probe, probe * 0.0005)  # timed again: 0.5 ms a step -> 200 steps a dispatch
    assert (sizes.size, sizes.probing) == (200, False)
    slower = dispatch.ChunkSizes("auto", steps_per_epoch=1000)
    _probe(slower, one_step_s=0.001, chunk_s=probe * 0.0015)
    for _ in range(dispatch.LOOP_PROBES - 1):
        assert slower.probing
        slower.observe(probe, probe * 0.002)
    assert (slower.size, slower.probing) == (1, False)  # slower every time: no fusing


def test_auto_ends_its_probing_under_a_callback_acting_every_few_steps():
    every_four = LambdaCallback(on_step_end=lambda run, batch: None)
    every_four.every_steps = 4  # chunks end every 4 steps: shorter than the loop probe of 8
    trainer = classifier()
    state, _ = fit(trainer, [every_four], epochs=2)
    sizes = trainer._chunk_sizes("auto", state, 32, 15)
    assert not sizes.probing and sizes.size in (1, 15)  # probed with loops of 4, then chose (chunks still end every 4)
    assert trainer._compiled("fit", state).chunk._cache_size() == 1


@pytest.mark.parametrize("value", [-3, 2.5, "4"])
def test_a_callbacks_bad_every_steps_is_one_line(value):
    callback = LambdaCallback(on_step_end=lambda run, batch: None)
    callback.every_steps = value
    with pytest.raises(ValueError, match=rf"^LambdaCallback.every_steps must be a non-negative integer, got {value!r}$"):
        fit(classifier(), [callback], epochs=1)


@pytest.mark.parametrize("value", [0, -2, 2.5, "fast", True])
def test_bad_steps_per_dispatch_is_one_line(value):
    with pytest.raises(ValueError, match=f'steps_per_dispatch must be a positive integer or "auto", got {value!r}'):
        fit(classifier(), epochs=1, steps_per_dispatch=value)


def test_dropout_keys_follow_the_step_not_the_chunk():
    trainer = Trainer(Sequential([Dense(32, "relu"), Dropout(0.5), Dense(3, "softmax")]))
    _same(fit(trainer, epochs=2, steps_per_dispatch=1), fit(trainer, epochs=2, steps_per_dispatch=6))
