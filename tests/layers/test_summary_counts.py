"""`jaxnn.summary` output shapes and parameter counts equal Keras's formulas for the same configurations."""
import re

import pytest

import jaxnn
from jaxnn.layers import (GRU, LSTM, BatchNormalization, Bidirectional, Conv1D, Conv2D, Conv2DTranspose, Dense,
                          Dropout, Embedding, Flatten, LayerNormalization, MaxPooling2D, SimpleRNN, SpatialDropout2D)


def _summary(model, input_shape):
    text = jaxnn.summary(model, input_shape, print_fn=None)
    totals = {key: int(re.search(rf"^{key} params: ([\d,]+)$", text, re.M).group(1).replace(",", ""))
              for key in ("Total", "Trainable", "Non-trainable")}
    return text, totals


def _rows(model, input_shape):
    _, params, state = jaxnn.layers.abstract_init(model, (None, *input_shape))
    return model.summary_rows("model", (None, *input_shape), params, state)


@pytest.mark.parametrize("layer,input_shape,output_shape,count", [
    (Conv2D(32, (3, 3)), (28, 28, 1), (None, 26, 26, 32), 3 * 3 * 1 * 32 + 32),  # 320
    (LSTM(128), (28, 28), (None, 128), 4 * 128 * (28 + 128 + 1)),  # 80,384
    (GRU(16), (10, 8), (None, 16), 3 * (16 * (8 + 16) + 2 * 16)),  # reset_after: two bias rows
    (GRU(16, reset_after=False), (10, 8), (None, 16), 3 * (16 * (8 + 16) + 16)),
    (SimpleRNN(16), (10, 8), (None, 16), 16 * (8 + 16 + 1)),
    (Conv1D(12, 5, padding="causal"), (20, 3), (None, 20, 12), 5 * 3 * 12 + 12),
    (Conv2D(16, 3, groups=4), (9, 9, 8), (None, 7, 7, 16), 3 * 3 * (8 // 4) * 16 + 16),
    (Conv2DTranspose(16, 4, strides=2, padding="same"), (7, 7, 32), (None, 14, 14, 16), 4 * 4 * 16 * 32 + 16),
    (Embedding(1000, 64), (20,), (None, 20, 64), 1000 * 64),
    (Bidirectional(LSTM(32, return_sequences=True)), (15, 10), (None, 15, 64), 2 * 4 * 32 * (10 + 32 + 1)),
    (LayerNormalization(), (5, 48), (None, 5, 48), 2 * 48),
])
def test_single_layer_counts_and_shapes_match_keras(layer, input_shape, output_shape, count):
    model = jaxnn.Sequential([layer])
    (row,) = _rows(model, input_shape)
    assert row["output_shape"] == output_shape
    assert (row["trainable"], row["non_trainable"]) == (count, 0)
    text, totals = _summary(model, input_shape)
    assert totals == {"Total": count, "Trainable": count, "Non-trainable": 0}
    assert f"{count:,}" in text


def test_batchnorm_on_64_channels_counts_256_with_128_non_trainable():
    (row,) = _rows(jaxnn.Sequential([BatchNormalization()]), (8, 8, 64))
    assert (row["trainable"], row["non_trainable"]) == (128, 128)
    _, totals = _summary(jaxnn.Sequential([BatchNormalization()]), (8, 8, 64))
    assert totals == {"Total": 256, "Trainable": 128, "Non-trainable": 128}


def test_sequential_cnn_table_matches_keras():
    model = jaxnn.Sequential([
        Conv2D(32, 3, activation="relu"), BatchNormalization(), MaxPooling2D(),
        Conv2D(64, 3, padding="same", use_bias=False), BatchNormalization(), MaxPooling2D(),
        SpatialDropout2D(0.2), Flatten(), Dropout(0.5), Dense(10, activation="softmax"),
    ])
    rows = _rows(model, (28, 28, 1))
    assert [(r["type"], r["output_shape"], r["trainable"] + r["non_trainable"]) for r in rows] == [
        ("Conv2D", (None, 26, 26, 32), 320),
        ("BatchNormalization", (None, 26, 26, 32), 128),
        ("MaxPooling2D", (None, 13, 13, 32), 0),
        ("Conv2D", (None, 13, 13, 64), 3 * 3 * 32 * 64),
        ("BatchNormalization", (None, 13, 13, 64), 256),
        ("MaxPooling2D", (None, 6, 6, 64), 0),
        ("SpatialDropout2D", (None, 6, 6, 64), 0),
        ("Flatten", (None, 2304), 0),
        ("Dropout", (None, 2304), 0),
        ("Dense", (None, 10), 2304 * 10 + 10),
    ]
    _, totals = _summary(model, (28, 28, 1))
    assert totals == {"Total": 42_186, "Trainable": 41_994, "Non-trainable": 192}  # Keras 3.15's numbers
