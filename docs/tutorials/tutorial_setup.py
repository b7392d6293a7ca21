"""What the tutorials share: their fast mode, where their figures go, and saving a figure there.

`JAXNN_TUTORIAL_FAST=1` runs a tutorial on a subset of its data for one epoch (the test suite does this to
keep the tutorials true); `JAXNN_TUTORIAL_OUT` names the folder for figures (default: `figures/` beside
the tutorials).
"""
import os
import pathlib

FAST = os.environ.get("JAXNN_TUTORIAL_FAST") == "1"
OUT = pathlib.Path(os.environ.get("JAXNN_TUTORIAL_OUT") or pathlib.Path(__file__).parent / "figures")


def size(full: int, fast: int) -> int:
    """`full` normally (examples, epochs), `fast` in fast mode."""
    return fast if FAST else full


def epoch_axis(ax) -> None:
    """Label `ax`'s x axis "epoch", with ticks at whole epochs only."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")


def save(fig, name: str):
    """Write the matplotlib figure `fig` to OUT/name and return it (a notebook then shows it)."""
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / name, dpi=100)
    print(f"wrote {OUT / name}")
    return fig
