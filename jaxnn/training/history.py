"""Keras-style History: per-epoch metric lists, JSON, and loss/accuracy plots."""
from __future__ import annotations

import json
import os
from typing import Mapping


class History:
    """`history[key]` is a list with one value per epoch (`loss`, `accuracy`, `val_loss`, `lr`, ...).

    `stop_reason` says why training ended early (early stopping, a non-finite
    loss), or is None; `nonfinite` is the `guard.NonFinite` when a NaN/inf
    stopped it, else None. Neither is part of `to_json`.
    For an ensemble (`training.members`), `history` holds the mean over members
    and `members` one History per member (a member stopped early stops growing).
    """

    def __init__(self, history: Mapping[str, list] | None = None, epoch: list[int] | None = None,
                 members: list[History] | None = None):
        self.history: dict[str, list[float]] = {k: list(v) for k, v in (history or {}).items()}
        self.epoch: list[int] = list(epoch or [])
        self.members = members
        self.stop_reason: str | None = None
        self.nonfinite = None

    def to_dict(self) -> dict:
        """`history`, `epoch` and (for an ensemble) `members` as plain JSON values (checkpoint metadata)."""
        out = {"history": self.history, "keys": list(self.history), "epoch": self.epoch}  # keys: their order
        if self.members is not None:
            out["members"] = [m.to_dict() for m in self.members]
        return out

    def load_dict(self, saved: Mapping) -> None:
        """Take back what `to_dict` gave."""
        order = saved.get("keys") or list(saved["history"])  # the saved JSON's own keys come sorted
        self.history = {k: list(saved["history"][k]) for k in order}
        self.epoch = list(saved["epoch"])
        if self.members is not None:
            for member, kept in zip(self.members, saved.get("members", [])):
                member.load_dict(kept)

    def append(self, epoch: int, logs: Mapping[str, float]) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(float(v))

    def to_json(self) -> str:
        """The history dict as indented JSON."""
        return json.dumps(self.history, indent=2)

    def __repr__(self) -> str:
        members = f", members={len(self.members)}" if self.members is not None else ""
        return f"History(epochs={len(self.epoch)}, keys={sorted(self.history)}{members})"


def plot_history(history, path: str | os.PathLike | None = None):
    """Loss and accuracy (train and validation) against epochs, as in the seed notes; for a History with
    `members` (an ensemble), each member's curves as thin lines under their mean.

    Returns the matplotlib Figure (it displays in a notebook); with `path`, also
    writes it there (PNG). Built without pyplot, so it is safe off the main thread.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    hist = history.history if isinstance(history, History) else dict(history)
    members = [m.history for m in history.members or ()] if isinstance(history, History) else []
    panels = [k for k in hist if not k.startswith("val_") and k != "lr"]
    fig = Figure(figsize=(5 * len(panels), 4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, key in zip(axes[0], panels):
        for color, name in (("C0", key), ("C1", f"val_{key}")):
            for i, member in enumerate(members):
                if name in member:
                    ax.plot(range(1, len(member[name]) + 1), member[name], "-" if color == "C0" else "--",
                            color=color, lw=0.8, alpha=0.35, label=f"{name}, each member" if i == 0 else None)
        mean = " (mean)" if members else ""
        ax.plot(range(1, len(hist[key]) + 1), hist[key], "o-", color="C0", label=key + mean)
        if f"val_{key}" in hist:
            ax.plot(range(1, len(hist[f"val_{key}"]) + 1), hist[f"val_{key}"], "s--", color="C1",
                    label=f"val_{key}" + mean)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100, format="png")
    return fig
