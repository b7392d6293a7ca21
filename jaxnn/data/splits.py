"""Split sizes and data locations, checked before any data is read (TFDS's metadata only; no TensorFlow).

    split_size("fashion_mnist", "train[:3000]")     # 3000
    split_size("fashion_mnist", "validation")       # ValueError: names no split of fashion_mnist

A prepared dataset's sizes come from its TFDS `dataset_info.json` in
`data_dir`; one not prepared yet uses the sizes TFDS will prepare
(`FULL_SPLIT_SIZES`). TFDS's own split syntax (slices, percentages, `+`) is
resolved by `tfds.core.ReadInstruction`; `tensorflow_datasets` is imported,
TensorFlow is not.
"""
from __future__ import annotations

import os
import types

# The splits TFDS prepares for each supported dataset, with their example counts.
FULL_SPLIT_SIZES = {
    "fashion_mnist": {"train": 60_000, "test": 10_000},
    "mnist": {"train": 60_000, "test": 10_000},
    "imdb_reviews": {"train": 25_000, "test": 25_000, "unsupervised": 50_000},
    "ag_news_subset": {"train": 120_000, "test": 7_600},
}


def split_sizes(num_examples: int, validation_split: float) -> tuple[int, int]:
    """(training, validation) example counts when the last `validation_split` (in [0, 1)) is held out."""
    num_train = num_examples - int(round(num_examples * validation_split))
    return num_train, num_examples - num_train


def check_data_dir(data_dir: str | None) -> None:
    """A given `data_dir` must be an existing directory: TFDS would silently create a mistyped one and prepare
    the dataset in it."""
    if data_dir is not None and not os.path.isdir(data_dir):
        what = "is a file" if os.path.exists(data_dir) else "does not exist"
        raise ValueError(f"dataset.data_dir {data_dir} {what}: create it (mkdir -p {data_dir}) to prepare the "
                         "dataset there, or leave data_dir unset for TFDS's default ($TFDS_DATA_DIR or "
                         "~/tensorflow_datasets)")


def _prepared_sizes(name: str, data_dir: str | None) -> dict[str, int]:
    import tensorflow_datasets as tfds

    try:
        splits = tfds.builder(name, data_dir=data_dir).info.splits
    except Exception:  # noqa: BLE001 (unreadable metadata: loading will say what is wrong)
        return {}
    return {split: info.num_examples for split, info in splits.items()}


def split_size(name: str, split: str, data_dir: str | None = None, field: str = "split") -> int:
    """The number of examples `split` (TFDS syntax) of dataset `name` holds; an unknown split raises naming it."""
    import tensorflow_datasets as tfds

    sizes = _prepared_sizes(name, data_dir) or FULL_SPLIT_SIZES[name]
    infos = {k: types.SimpleNamespace(num_examples=v) for k, v in sizes.items()}
    try:
        instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(infos)
    except (ValueError, KeyError, AssertionError, AttributeError) as e:
        reason = str(e).splitlines()[0].split(". See format")[0]
        raise ValueError(f"{field} {split!r} names no split of {name} ({reason}); splits: "
                         f"{', '.join(f'{k} ({v} examples)' for k, v in sizes.items())}") from None
    return sum((sizes[i.splitname] if i.to is None else i.to) - (i.from_ or 0) for i in instructions)
