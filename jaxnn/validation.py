"""Argument checks shared by every module: one line naming the field, the value and what is allowed.

    positive_int("train.epochs", 0)   # ValueError: train.epochs must be a positive integer, got 0
"""
from __future__ import annotations

import numbers

import numpy as np


def require(field: str, value, ok: bool, allowed: str) -> None:
    """Raise `ValueError("<field> must be <allowed>, got <value>")` unless `ok`."""
    if not ok:
        raise ValueError(f"{field} must be {allowed}, got {value!r}")


def is_int(value) -> bool:
    """A Python or numpy integer; never a bool (True is an int to Python, not a count to a user)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number(value) -> bool:
    """A real number (int or float, numpy's too); never a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def integer(field: str, value, minimum: int | None = None, allowed: str | None = None) -> int:
    """`value` as an int, checked to be an integer >= `minimum`."""
    ok = is_int(value) and (minimum is None or value >= minimum)
    require(field, value, ok, allowed or ("an integer" if minimum is None else f"an integer >= {minimum}"))
    return int(value)


def positive_int(field: str, value) -> int:
    return integer(field, value, 1, "a positive integer")


def non_negative_int(field: str, value) -> int:
    return integer(field, value, 0, "a non-negative integer")


def positive_number(field: str, value) -> float:
    require(field, value, is_number(value) and value > 0, "a positive number")
    return value
