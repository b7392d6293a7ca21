"""Which way a monitored metric improves: the rule EarlyStopping, ReduceLROnPlateau and ModelCheckpoint share."""
from __future__ import annotations


def resolve_mode(monitor: str, mode: str) -> str:
    """Keras's 'auto': maximise accuracy-like metrics, minimise the rest."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor or monitor.startswith("fmeasure") else "min"
    return mode


def improved(mode: str, current: float, best: float | None, min_delta: float) -> bool:
    """Whether `current` beats `best` (None: nothing yet) by more than `min_delta` in direction `mode`."""
    if best is None:
        return True
    return current < best - min_delta if mode == "min" else current > best + min_delta
