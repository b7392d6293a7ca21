"""SimpleRNN/LSTM/GRU against a per-step numpy loop of Keras's equations; masks, states, Bidirectional, errors."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxnn
from jaxnn.layers import GRU, LAYERS, LSTM, Bidirectional, Dense, ShapeError, SimpleRNN, abstract_init


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def rnn_reference(layer, params, x, mask=None, initial=None, dropout_masks=(None, None)):
    """Keras's equations step by step; returns the outputs in processing order and the final (h, c).

    `dropout_masks` (input (batch, features), recurrent (batch, units)) scale x_t and, where it enters
    the recurrent matmuls, h, at every step (Keras 3's DropoutRNNCell)."""
    input_mask, recurrent_mask = (np.ones(()) if m is None else np.asarray(m, np.float64) for m in dropout_masks)
    batch, time, _ = x.shape
    units = layer.units
    kernel, recurrent = params["kernel"], params["recurrent_kernel"]
    bias = params.get("bias", np.zeros((2, 3 * units)) if isinstance(layer, GRU) and layer.reset_after
                      else np.zeros(kernel.shape[1]))
    gates = lambda m, k: m[..., k * units:(k + 1) * units]  # noqa: E731
    h = np.zeros((batch, units)) if initial is None else initial[0]
    c = np.zeros((batch, units)) if initial is None or len(initial) < 2 else initial[1]
    outputs = []
    for t in (reversed(range(time)) if layer.go_backwards else range(time)):
        x_t, c_new, h_in = x[:, t] * input_mask, c, h * recurrent_mask
        if isinstance(layer, SimpleRNN):
            h_new = np.tanh(x_t @ kernel + h_in @ recurrent + bias)
        elif isinstance(layer, LSTM):
            z = x_t @ kernel + h_in @ recurrent + bias
            i, f, g, o = (gates(z, k) for k in range(4))
            c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h_new = sigmoid(o) * np.tanh(c_new)
        elif layer.reset_after:
            x_part, h_part = x_t @ kernel + bias[0], h_in @ recurrent + bias[1]
            z = sigmoid(gates(x_part, 0) + gates(h_part, 0))
            r = sigmoid(gates(x_part, 1) + gates(h_part, 1))
            h_new = z * h + (1 - z) * np.tanh(gates(x_part, 2) + r * gates(h_part, 2))
        else:
            x_part = x_t @ kernel + bias
            z = sigmoid(gates(x_part, 0) + h_in @ gates(recurrent, 0))
            r = sigmoid(gates(x_part, 1) + h_in @ gates(recurrent, 1))
            h_new = z * h + (1 - z) * np.tanh(gates(x_part, 2) + (r * h_in) @ gates(recurrent, 2))
        if mask is not None:  # a masked step keeps the previous state
            h_new, c_new = np.where(mask[:, t, None], h_new, h), np.where(mask[:, t, None], c_new, c)
        h, c = h_new, c_new
        outputs.append(h)
    return np.stack(outputs, axis=1), (h, c)


def _random(shape, seed, scale=0.5):
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def _params(layer, input_shape, seed=0, dtype=np.float32):
    """Random params of the right shapes without running the (compile-heavy) random initializers."""
    _, spec, _ = abstract_init(layer, input_shape)
    return jax.tree_util.tree_map(lambda s: _random(s.shape, seed).astype(dtype), spec)


MASK = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0]], bool)  # right-padded, lengths 4, 6, 2

LAYER_KINDS = [SimpleRNN(3), LSTM(3), GRU(3), GRU(3, reset_after=False)]


@pytest.mark.parametrize("base", LAYER_KINDS, ids=["simple_rnn", "lstm", "gru", "gru_reset_before"])
@pytest.mark.parametrize("extras", ["plain", "mask_backwards_initial_state"])
def test_matches_per_step_loop_of_keras_equations(base, extras):
    x = _random((3, 6, 2), 1, scale=1.0)
    params = _params(base, (None, 6, 2))
    states = len(base.state_names)
    initial = tuple(_random((3, 3), 10 + i) for i in range(states)) if extras != "plain" else None
    mask = MASK if extras != "plain" else None
    layer = dataclasses.replace(base, return_sequences=True, return_state=True, go_backwards=extras != "plain")
    inputs = x if extras == "plain" else {"inputs": x, "mask": mask, "initial_state": initial}
    (sequence, *final), _ = layer.apply(params, inputs)
    expected_sequence, (h, c) = rnn_reference(layer, params, x.astype(np.float64), mask, initial)
    np.testing.assert_allclose(sequence, expected_sequence, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(final[0], h, rtol=1e-4, atol=1e-5)
    if states == 2:
        np.testing.assert_allclose(final[1], c, rtol=1e-4, atol=1e-5)
    last, _ = dataclasses.replace(base, go_backwards=extras != "plain").apply(params, inputs)
    np.testing.assert_allclose(last, h, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("base", LAYER_KINDS, ids=["simple_rnn", "lstm", "gru", "gru_reset_before"])
def test_dropout_and_recurrent_dropout_match_keras_equations_with_one_mask_per_sequence(base):
    x = _random((3, 6, 2), 1, scale=1.0)
    params = _params(base, (None, 6, 2))
    layer = dataclasses.replace(base, return_sequences=True, dropout=0.5, recurrent_dropout=0.25)
    masks = layer.dropout_masks(jax.random.key(7), 3, 2)  # the masks `apply` draws from the same key
    assert masks[0].shape == (3, 2) and masks[1].shape == (3, 3)
    sequence, _ = layer.apply(params, {"inputs": x, "mask": MASK}, key=jax.random.key(7), train=True)
    expected, _ = rnn_reference(layer, params, x.astype(np.float64), MASK, dropout_masks=masks)
    np.testing.assert_allclose(sequence, expected, rtol=1e-4, atol=1e-5)
    plain, _ = dataclasses.replace(base, return_sequences=True).apply(params, x)
    np.testing.assert_array_equal(layer.apply(params, x)[0], plain)  # inference: no dropout, no key needed
    with pytest.raises(ValueError, match="draws random numbers when train=True: pass key="):
        layer.apply(params, x, train=True)


def test_dropout_masks_drop_at_the_rate_and_scale_the_rest():
    input_mask, recurrent_mask = LSTM(50, dropout=0.3, recurrent_dropout=0.6).dropout_masks(jax.random.key(0), 400, 20)
    for mask, rate in ((input_mask, 0.3), (recurrent_mask, 0.6)):
        values = np.unique(np.asarray(mask))
        np.testing.assert_allclose(values, [0.0, 1 / (1 - rate)], rtol=1e-6)
        assert abs(float(np.mean(np.asarray(mask) == 0)) - rate) < 0.02  # 8,000 and 20,000 draws
    assert LSTM(5, dropout=0.3).dropout_masks(jax.random.key(0), 4, 2)[1] is None


def test_bidirectional_draws_dropout_for_each_direction():
    layer = Bidirectional(GRU(3, return_sequences=True, dropout=0.5, recurrent_dropout=0.5), merge_mode=None)
    params = _params(layer, (None, 6, 2))
    x = _random((3, 6, 2), 1, scale=1.0)
    (forward, backward), _ = layer.apply(params, x, key=jax.random.key(3), train=True)
    k_forward, k_backward = jax.random.split(jax.random.key(3))
    expected_forward, _ = layer.layer.apply(params["forward_gru"], x, key=k_forward, train=True)
    expected_backward, _ = layer.backward.apply(params["backward_gru"], x, key=k_backward, train=True)
    np.testing.assert_allclose(forward, expected_forward, rtol=1e-6)
    np.testing.assert_allclose(backward, jnp.flip(expected_backward, axis=1), rtol=1e-6)
    assert not np.allclose(forward, layer.layer.apply(params["forward_gru"], x)[0])  # training did drop


def test_masked_steps_carry_state_so_padding_values_do_not_matter():
    layer = LSTM(4, return_sequences=True, return_state=True)
    x = _random((3, 6, 2), 2, scale=1.0)
    params = _params(layer, (None, 6, 2), seed=3)
    garbage = np.where(MASK[:, :, None], x, 100.0).astype(np.float32)
    (seq, h, c), _ = layer.apply(params, {"inputs": x, "mask": MASK})
    (seq_g, h_g, c_g), _ = layer.apply(params, {"inputs": garbage, "mask": MASK})
    np.testing.assert_allclose(seq, seq_g, rtol=1e-6)
    np.testing.assert_allclose(h, h_g, rtol=1e-6)
    np.testing.assert_allclose(c, c_g, rtol=1e-6)
    np.testing.assert_allclose(seq[2, 2:], np.broadcast_to(seq[2, 1], (4, 4)))  # outputs repeat after the end
    short, _ = LSTM(4).apply(params, x[2:, :2])
    np.testing.assert_allclose(h[2:], short, rtol=1e-5, atol=1e-6)


def test_init_shapes_and_keras_initializers():
    out_shape, params, state = LSTM(4).init(jax.random.key(0), (None, 7, 3))
    assert out_shape == (None, 4) and state == {}
    assert {k: v.shape for k, v in params.items()} == {"kernel": (3, 16), "recurrent_kernel": (4, 16), "bias": (16,)}
    np.testing.assert_array_equal(params["bias"], np.r_[np.zeros(4), np.ones(4), np.zeros(8)])  # unit_forget_bias
    recurrent = np.asarray(params["recurrent_kernel"])
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(4), atol=1e-5)  # orthogonal rows
    shapes = lambda layer: {k: v.shape for k, v in abstract_init(layer, (None, 7, 3))[1].items()}  # noqa: E731
    assert shapes(GRU(4))["bias"] == (2, 12) and shapes(GRU(4, reset_after=False))["bias"] == (12,)
    assert shapes(SimpleRNN(4)) == {"kernel": (3, 4), "recurrent_kernel": (4, 4), "bias": (4,)}
    assert "bias" not in shapes(GRU(4, use_bias=False))
    assert LSTM(4, return_sequences=True, return_state=True).output_shape((None, None, 3)) == (
        (None, None, 4), (None, 4), (None, 4))
    assert GRU(4, return_state=True).output_shape((None, 5, 3)) == ((None, 4), (None, 4))


def _manual_bidirectional(layer, params_f, params_b, x, lengths):
    """Forward layer on each example's real steps, and on them reversed (re-reversed), zeros after the end."""
    forward = type(layer)(layer.units, return_sequences=True)
    out_f, out_b = np.zeros((*x.shape[:2], layer.units)), np.zeros((*x.shape[:2], layer.units))
    for i, n in enumerate(lengths):
        out_f[i, :n] = forward.apply(params_f, x[i:i + 1, :n])[0][0]
        out_b[i, :n] = forward.apply(params_b, x[i:i + 1, :n][:, ::-1])[0][0][::-1]
    return out_f, out_b


@pytest.mark.parametrize("masked", [False, True])
def test_bidirectional_equals_manually_reversed_runs(masked):
    x = _random((3, 6, 2), 4, scale=1.0)
    lengths = MASK.sum(1) if masked else [6, 6, 6]
    layer = Bidirectional(GRU(3, return_sequences=True), merge_mode=None)
    params = {"forward_gru": _params(GRU(3), (None, 6, 2), 5), "backward_gru": _params(GRU(3), (None, 6, 2), 6)}
    assert set(abstract_init(layer, (None, 6, 2))[1]) == set(params)
    (out_f, out_b), _ = layer.apply(params, {"inputs": x, "mask": MASK} if masked else x)
    ref_f, ref_b = _manual_bidirectional(layer.layer, params["forward_gru"], params["backward_gru"], x, lengths)
    np.testing.assert_allclose(out_f, ref_f, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out_b, ref_b, rtol=1e-4, atol=1e-5)
    last, _ = Bidirectional(GRU(3)).apply(params, {"inputs": x, "mask": MASK} if masked else x)
    idx = np.arange(3)
    np.testing.assert_allclose(last, np.concatenate([ref_f[idx, np.asarray(lengths) - 1], ref_b[:, 0]], -1),
                               rtol=1e-4, atol=1e-5)


def test_bidirectional_merge_modes_states_and_names():
    x = _random((2, 5, 3), 7, scale=1.0)
    base = LSTM(4, return_sequences=True, name="encoder")
    params = {"forward_encoder": _params(base, (None, 5, 3), 8), "backward_encoder": _params(base, (None, 5, 3), 9)}
    (f, b), _ = Bidirectional(base, merge_mode=None).apply(params, x)
    for mode, expected in [("concat", np.concatenate([f, b], -1)), ("sum", f + b), ("mul", f * b), ("ave", (f + b) / 2)]:
        layer = Bidirectional(base, merge_mode=mode)
        y, _ = layer.apply(params, x)
        np.testing.assert_allclose(y, expected, rtol=1e-6)
        assert layer.output_shape((None, 5, 3)) == (None, 5, 8 if mode == "concat" else 4)
    with_states = Bidirectional(LSTM(4, return_state=True, name="encoder"))
    (y, fh, fc, bh, bc), _ = with_states.apply(params, x)
    assert y.shape == (2, 8) and with_states.output_shape((None, 5, 3)) == ((None, 8), *((None, 4),) * 4)
    np.testing.assert_allclose(y, np.concatenate([fh, bh], -1), rtol=1e-6)
    np.testing.assert_allclose(fh, f[:, -1], rtol=1e-5)
    np.testing.assert_allclose(bh, b[:, 0], rtol=1e-5)
    zeros = [np.zeros((2, 4), np.float32)] * 4
    (y0, *_), _ = with_states.apply(params, {"inputs": x, "initial_state": zeros})
    np.testing.assert_allclose(y0, y, rtol=1e-6)


def test_graph_model_passes_mask_and_initial_state_through_a_dict():
    x_in, mask_in, h_in = jaxnn.Input((6, 2)), jaxnn.Input((6,)), jaxnn.Input((3,))
    model = jaxnn.Model([x_in, mask_in, h_in], GRU(3, name="gru")({"inputs": x_in, "mask": mask_in, "initial_state": h_in}))
    params = {"gru": _params(GRU(3), (None, 6, 2), 11)}
    x, h0 = _random((3, 6, 2), 12), _random((3, 3), 13)
    y, _ = model.apply(params, [x, MASK, h0])
    expected, _ = GRU(3).apply(params["gru"], {"inputs": x, "mask": MASK, "initial_state": h0})
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_lstm_gradients_match_finite_differences():
    layer = LSTM(3, return_sequences=True)
    with jax.enable_x64():
        params = _params(layer, (None, 3, 2), 14, np.float64)
        x = jnp.asarray(_random((2, 3, 2), 15), jnp.float64)
        check_grads(jax.jit(lambda p, x: layer.apply(p, {"inputs": x, "mask": MASK[:2, 2:5]})[0]), (params, x),
                    order=1, modes=["rev"])


@pytest.mark.parametrize("layer", [*LAYER_KINDS, Bidirectional(LSTM(3, return_sequences=True))],
                         ids=["simple_rnn", "lstm", "gru", "gru_reset_before", "bidirectional"])
def test_apply_under_jit_equals_eager(layer):
    params = _params(layer, (None, 6, 2), 16)
    inputs = {"inputs": _random((3, 6, 2), 17), "mask": MASK}
    np.testing.assert_allclose(jax.jit(layer.apply)(params, inputs)[0], layer.apply(params, inputs)[0],
                               rtol=1e-5, atol=1e-6)


def test_registered_and_buildable_from_config_specs():
    layer = LAYERS.get("Bidirectional")(layer={"type": "LSTM", "units": 8, "return_sequences": True,
                                               "dropout": 0.2, "recurrent_dropout": 0.1})
    assert layer.layer == LSTM(8, return_sequences=True, dropout=0.2, recurrent_dropout=0.1)
    assert layer.output_shape((None, 10, 3)) == (None, 10, 16)
    assert LAYERS.get("GRU") is GRU and LAYERS.get("SimpleRNN") is SimpleRNN


@pytest.mark.parametrize("make,match", [
    (lambda: LSTM(0), "LSTM units must be a positive integer, got 0"),
    (lambda: GRU(3, recurrent_activation="sigmoidx"), "unknown activation 'sigmoidx'"),
    (lambda: SimpleRNN(3, recurrent_initializer="orth"), "unknown initializer 'orth'"),
    (lambda: LSTM(3, dropout=1.0), r"LSTM dropout must be in \[0, 1\), got 1.0"),
    (lambda: GRU(3, recurrent_dropout=-0.1), r"GRU recurrent_dropout must be in \[0, 1\), got -0.1"),
    (lambda: Bidirectional(Dense(3)), "Bidirectional layer must be a recurrent layer .* got Dense"),
    (lambda: Bidirectional({"type": "Dense", "units": 3}), "unknown recurrent layer 'Dense'; known: GRU, LSTM, SimpleRNN"),
    (lambda: Bidirectional(LSTM(3), merge_mode="avg"), "Bidirectional merge_mode must be one of .*'ave'.* got 'avg'"),
    (lambda: Bidirectional(LSTM(3), backward_layer=LSTM(3)), "opposite directions, got go_backwards=False for both"),
    (lambda: Bidirectional(LSTM(3), backward_layer=LSTM(3, go_backwards=True, return_sequences=True)),
     "must agree on return_sequences, got False and True"),
])
def test_bad_hyperparameters_raise_value_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("inputs,match", [
    (lambda x: x[:, :, :1], r"LSTM expects inputs \(batch, time, 2\), got shape \(3, 6, 1\)"),
    (lambda x: {"inputs": x, "mask": MASK[:, :5]}, r"expects a mask of shape \(batch, time\) = \(3, 6\), got \(3, 5\)"),
    (lambda x: {"inputs": x, "initial_state": np.zeros((3, 3))},
     r"expects initial_state as 2 array\(s\) \(h, c\) of shape \(batch, 3\), got shapes \(\(3, 3\),\)"),
    (lambda x: {"inputs": x, "masks": MASK}, r"LSTM takes an array or a dict with 'inputs' .* got keys \['inputs', 'masks'\]"),
])
def test_bad_inputs_name_what_was_expected(inputs, match):
    layer = LSTM(3)
    params = _params(layer, (None, 6, 2))
    with pytest.raises(ValueError, match=match):
        layer.apply(params, inputs(_random((3, 6, 2), 0)))


def test_init_on_a_non_sequence_raises_shape_error():
    with pytest.raises(ShapeError, match=r"GRU expects inputs \(batch, time, features\) with known features, got shape \(None, 8\)"):
        GRU(3).init(jax.random.key(0), (None, 8))
