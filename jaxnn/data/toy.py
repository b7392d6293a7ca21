"""Logic-gate truth tables as tiny datasets: the perceptron's classic tests.

AND and OR are linearly separable (one line splits the 1s from the 0s), XOR is
not, which is why a single perceptron cannot learn it and a hidden layer can.

    x, y = logic_gate("xor")       # x (4, 2) float32: 00 01 10 11;  y (4,) int32: 0 1 1 0
"""
from __future__ import annotations

import numpy as np

from jaxnn import validation

INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
GATES = {
    "and": (0, 0, 0, 1),
    "or": (0, 1, 1, 1),
    "xor": (0, 1, 1, 0),
}


def logic_gate(gate: str, *, repeats: int = 1, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The truth table of `gate` ("and", "or", "xor") repeated `repeats` times, shuffled if `seed` is given.

    Returns x (4 * repeats, 2) float32 in {0, 1} and y (4 * repeats,) int32.
    """
    if gate not in GATES:
        raise ValueError(f"gate must be one of {', '.join(GATES)}, got {gate!r}")
    validation.positive_int("repeats", repeats)
    x = np.tile(INPUTS, (repeats, 1))
    y = np.tile(np.array(GATES[gate], np.int32), repeats)
    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(y))
        x, y = x[order], y[order]
    return x, y
