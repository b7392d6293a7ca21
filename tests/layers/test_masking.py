"""Keras's implicit masking: a mask made by Embedding(mask_zero=True) or Masking reaches the layers after it in
Sequential and graph models, against each sequence run alone without its padding."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import (GRU, LSTM, Add, Bidirectional, Concatenate, Dense, Dropout, Embedding, Flatten,
                   GlobalAveragePooling1D, Input, Masking, Model, Sequential, ShapeError, SimpleRNN)
from jaxnn.layers import from_spec

# post-padded ids: lengths 5, 2, 3 (padding at the end, where an unmasked LSTM would keep reading it)
IDS = np.array([[3, 1, 4, 1, 5], [9, 2, 0, 0, 0], [6, 5, 3, 0, 0]], np.int32)
LENGTHS = (5, 2, 3)


def init(model, shape=(None, 5)):
    return model.init(jax.random.key(0), shape)[1]


def apply(model, params, x, **kwargs):
    return model.apply(params, x, **kwargs)[0]


def per_sequence(fn, ids=IDS, lengths=LENGTHS):
    """`fn` on each sequence cut to its real steps, stacked: what masking must reproduce."""
    return np.concatenate([np.asarray(fn(ids[i:i + 1, :n])) for i, n in enumerate(lengths)])


def test_sequential_embedding_mask_makes_the_lstm_skip_the_padding():
    model = Sequential([Embedding(10, 4, mask_zero=True, name="emb"), LSTM(3, name="lstm")])
    params = init(model)
    got = apply(model, params, IDS)
    vectors = lambda ids: params["emb"]["embeddings"][ids]
    want = per_sequence(lambda ids: LSTM(3).apply(params["lstm"], vectors(ids))[0])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    unmasked = Sequential([Embedding(10, 4, name="emb"), LSTM(3, name="lstm")])
    assert not np.allclose(apply(unmasked, params, IDS)[1:], want[1:], atol=1e-3)  # padding read: other outputs
    np.testing.assert_allclose(jax.jit(model.apply)(params, IDS)[0], got, rtol=1e-6, atol=1e-6)


def test_the_mask_passes_dropout_and_a_sequence_returning_layer_and_stops_at_a_last_output():
    model = Sequential([Embedding(10, 4, mask_zero=True, name="emb"), Dropout(0.5),
                        GRU(3, return_sequences=True, name="gru"), SimpleRNN(2, name="rnn"), Dense(1, name="out")])
    params = init(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Dense after the last output gets no mask, so no warning
        got = apply(model, params, IDS)

    def alone(ids):
        h = GRU(3, return_sequences=True).apply(params["gru"], params["emb"]["embeddings"][ids])[0]
        h = SimpleRNN(2).apply(params["rnn"], h)[0]
        return Dense(1).apply(params["out"], h)[0]

    np.testing.assert_allclose(got, per_sequence(alone), rtol=1e-6, atol=1e-6)


def test_global_average_pooling_averages_the_real_steps_only():
    model = Sequential([Embedding(10, 4, mask_zero=True, name="emb"), GlobalAveragePooling1D()])
    params = init(model)
    ids = np.concatenate([IDS, np.zeros((1, 5), np.int32)])  # a sequence of padding only
    table = np.asarray(params["emb"]["embeddings"])
    want = [table[row[:n]].mean(axis=0) for row, n in zip(ids, LENGTHS)] + [np.zeros(4)]
    np.testing.assert_allclose(apply(model, params, ids), np.stack(want), rtol=1e-6, atol=1e-7)
    x = jnp.asarray(table[ids])
    np.testing.assert_allclose(GlobalAveragePooling1D().apply({}, {"inputs": x, "mask": ids != 0})[0], np.stack(want),
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(GlobalAveragePooling1D().apply({}, x)[0], x.mean(axis=1), rtol=1e-6)
    with pytest.raises(ShapeError, match=r"expects a mask of shape \(batch, steps\) = \(4, 5\), got \(4, 4\)"):
        GlobalAveragePooling1D().apply({}, {"inputs": x, "mask": ids[:, :4] != 0})
    with pytest.raises(ValueError, match=r"optionally 'mask'; got keys \['inputs', 'weights'\]"):
        GlobalAveragePooling1D().apply({}, {"inputs": x, "weights": ids})


def test_graph_model_carries_masks_along_its_edges_and_merges_them():
    ids = Input((5,), name="ids")
    vectors = Embedding(10, 4, mask_zero=True, name="emb")(ids)
    seq = LSTM(3, return_sequences=True, name="lstm")(vectors)
    skip = Dense(3, name="proj")(vectors)
    summed = Add(name="add")([seq, skip])
    pooled = GlobalAveragePooling1D(name="avg")(summed)
    last = Bidirectional(GRU(2), name="bi")(summed)
    model = Model(ids, Concatenate(name="join")([pooled, last]))
    params = init(model)
    got = apply(model, params, IDS)

    def alone(ids):
        x = params["emb"]["embeddings"][ids]
        s = LSTM(3, return_sequences=True).apply(params["lstm"], x)[0] + Dense(3).apply(params["proj"], x)[0]
        b = Bidirectional(GRU(2)).apply(params["bi"], s)[0]
        return jnp.concatenate([s.mean(axis=1), b], axis=-1)

    np.testing.assert_allclose(got, per_sequence(alone), rtol=1e-5, atol=1e-6)


def test_an_explicit_mask_given_in_a_dict_wins_over_the_implicit_one():
    ids = Input((5,), name="ids")
    mask = Input((5,), name="mask")
    out = LSTM(3, name="lstm")({"inputs": Embedding(10, 4, mask_zero=True, name="emb")(ids), "mask": mask})
    model = Model([ids, mask], out)
    params = init(model, [(None, 5), (None, 5)])
    everything = np.ones_like(IDS, bool)
    got = apply(model, params, [IDS, everything])
    want = LSTM(3).apply(params["lstm"], params["emb"]["embeddings"][IDS])[0]  # the padding read, as asked
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_a_layer_that_cannot_use_the_mask_drops_it_with_a_warning():
    model = Sequential([Embedding(10, 4, mask_zero=True), Flatten(), Dense(2)])
    params = init(model)
    with pytest.warns(UserWarning, match=r"layer 'flatten' \(Flatten\) does not support masking"):
        apply(model, params, IDS)


def test_masking_layer_zeroes_padded_steps_and_masks_them():
    x = np.random.default_rng(0).normal(size=(3, 5, 2)).astype(np.float32)
    for row, n in enumerate(LENGTHS):
        x[row, n:] = -1.0
    layer = from_spec({"type": "Masking", "mask_value": -1.0})
    assert isinstance(layer, Masking)
    y = np.asarray(layer.apply({}, x)[0])
    np.testing.assert_array_equal(layer.compute_mask(x), IDS != 0)
    np.testing.assert_array_equal(y, np.where((IDS != 0)[..., None], x, 0.0))
    model = Sequential([Masking(-1.0), SimpleRNN(3, name="rnn")])
    params = init(model, (None, 5, 2))
    want = np.concatenate([SimpleRNN(3).apply(params["rnn"], x[i:i + 1, :n])[0] for i, n in enumerate(LENGTHS)])
    np.testing.assert_allclose(apply(model, params, x), want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ShapeError, match=r"Masking expects inputs \(batch, time, features\), got shape \(None, 5\)"):
        Masking().init(jax.random.key(0), (None, 5))


def test_masking_masks_a_step_only_when_every_feature_equals_the_mask_value():
    x = np.array([[[-1.0, -1.0], [-1.0, 0.5], [0.5, -1.0], [0.5, 0.5]]], np.float32)  # all, some, some, none
    layer = Masking(-1.0)
    np.testing.assert_array_equal(layer.compute_mask(x), [[False, True, True, True]])
    np.testing.assert_array_equal(layer.apply({}, x)[0], np.concatenate([np.zeros((1, 1, 2)), x[:, 1:]], axis=1))


def test_merge_masks():
    a, b = jnp.array([[True, True, False]]), jnp.array([[True, False, False]])
    x = jnp.zeros((1, 3, 2))
    np.testing.assert_array_equal(Add().compute_mask([x, x], [a, b]), a & b)
    np.testing.assert_array_equal(Add().compute_mask([x, x], [a, None]), a)
    assert Add().compute_mask([x, x], [None, None]) is None
    np.testing.assert_array_equal(Concatenate(axis=1).compute_mask([x, x], [a, None]),
                                  [[True, True, False, True, True, True]])
    np.testing.assert_array_equal(Concatenate().compute_mask([x, x], [a, b]), a & b)


@pytest.mark.parametrize("layer,passes", [
    (LSTM(2), False), (LSTM(2, return_sequences=True), True), (LSTM(2, return_sequences=True, return_state=True), False),
    (Bidirectional(LSTM(2, return_sequences=True)), True), (Bidirectional(LSTM(2)), False),
    (Bidirectional(LSTM(2, return_sequences=True), merge_mode=None), False),
    (Dense(2), True), (Dropout(0.1), True), (Flatten(), False), (Embedding(3, 2), False),
])
def test_which_layers_pass_a_mask_on(layer, passes):
    mask = jnp.array([[True, False]])
    out = layer.compute_mask(jnp.zeros((1, 2, 2), jnp.int32), mask)
    assert (out is mask) == passes and (passes or out is None)
