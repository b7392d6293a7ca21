"""Checkpoints of pytrees of arrays with orbax: atomic, checksummed, validated on restore; no pickle anywhere.

A checkpoint is a directory holding `arrays/` (an orbax checkpoint of the
tree's leaves, each distinct array once, uncompressed, packed into one flat
array per dtype) and `meta.json`: each leaf's path
(`state/params/dense/kernel`), shape, dtype, CRC-32 and place in its packed
array, plus the caller's plain metadata. It is written under
a temporary name and renamed into place when complete, so a kill mid-save
leaves no checkpoint that looks whole. Restoring checks every array against
its checksum (orbax alone restored a flipped byte silently, DESIGN.md) and
checks the tree against the one the caller expects before anything is used:
a mismatch names the first differing path and both shapes.

`CheckpointManager` keeps `step_<n>` checkpoints in one directory: the last
`keep` plus the best by a metric, and restores the newest one that verifies,
warning about each corrupt one it skips.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import warnings
import zlib

import jax
import numpy as np

from jaxnn import validation

FORMAT_VERSION = 3  # 2: an array identical to an earlier one is stored once (`same_as`); 3: packed per dtype
META_FILE = "meta.json"
ARRAYS_DIR = "arrays"


class CheckpointMismatchError(ValueError):
    """The checkpoint holds a different tree (another model, optimizer or config) than the run expects."""


class CorruptCheckpointError(RuntimeError):
    """The checkpoint cannot be read back exactly as written (truncated, altered or incomplete)."""


def _path_str(path) -> str:
    parts = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def _is_key(x) -> bool:
    return jax.dtypes.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)


def tree_spec(tree, prefix: str = "") -> dict[str, tuple[tuple[int, ...], str]]:
    """Path -> (shape, dtype) of every leaf (PRNG keys as their key data), in flattening order."""
    spec = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        shaped = jax.eval_shape(jax.random.key_data, leaf) if _is_key(leaf) else leaf
        spec[prefix + _path_str(path)] = (tuple(np.shape(shaped)), np.dtype(shaped.dtype).name)
    return spec


def flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """Path -> host numpy array for every leaf; PRNG keys become their uint32 key data."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    arrays = jax.device_get([jax.random.key_data(x) if _is_key(x) else x for _, x in leaves])
    return {prefix + _path_str(path): np.asarray(a) for (path, _), a in zip(leaves, arrays)}


def check_structure(saved: dict[str, tuple], like, prefix: str = "", where: str = "checkpoint") -> None:
    """Raise CheckpointMismatchError naming the first path whose presence, shape or dtype differs."""
    expected = tree_spec(like, prefix)
    saved = {p: (tuple(s), d) for p, (s, d) in saved.items() if p.startswith(prefix)}
    for path, (shape, dtype) in expected.items():
        if path not in saved:
            raise CheckpointMismatchError(f"{where} does not match the model: {path} {shape} is in the model "
                                          f"but not in the checkpoint")
        if saved[path] != (shape, dtype):
            raise CheckpointMismatchError(
                f"{where} does not match the model: first mismatch at {path}: checkpoint has shape "
                f"{saved[path][0]} {saved[path][1]}, the model {shape} {dtype}")
    extra = [p for p in saved if p not in expected]
    if extra:
        raise CheckpointMismatchError(f"{where} does not match the model: {extra[0]} {saved[extra[0]][0]} is in "
                                      f"the checkpoint but not in the model")


def unflatten(flat: dict[str, np.ndarray], like, prefix: str = "", where: str = "checkpoint"):
    """The tree shaped like `like` from `flatten`'s dict (validated first; keys wrapped back)."""
    check_structure({p: (a.shape, a.dtype.name) for p, a in flat.items()}, like, prefix, where)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(like)
    out = []
    for path, leaf in leaves:
        value = flat[prefix + _path_str(path)]
        out.append(jax.random.wrap_key_data(value, impl=str(jax.random.key_impl(leaf))) if _is_key(leaf)
                   else jax.numpy.asarray(value))
    return jax.tree_util.tree_unflatten(treedef, out)


class _NoMergeWarning(logging.Filter):
    """Drops orbax's warning that a checkpoint written without OCDBT has no OCDBT files to merge (every save)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Skipping merge of OCDBT checkpoints" not in str(record.msg)


_NO_MERGE_WARNING = _NoMergeWarning()


def _checkpointer(saving: bool = False):
    """orbax's synchronous checkpointer (the write is complete when `save` returns), uncompressed and without OCDBT.

    zstd and OCDBT cost more CPU than they saved on packed arrays (bench/RESULTS.md); checkpoints written
    with either still restore, as orbax reads each checkpoint's own metadata. `saving` skips orbax's copy
    of each host array, a guard for asynchronous saves: these saves are synchronous and write arrays
    `_pack` has just made. Restoring keeps orbax's default handlers.
    """
    import orbax.checkpoint as ocp

    logging.getLogger("absl").addFilter(_NO_MERGE_WARNING)  # once: a logger holds a filter object at most once
    options = {}
    if saving:
        options["type_handler_registry"] = ocp.type_handlers.create_type_handler_registry(
            (np.ndarray, ocp.type_handlers.NumpyHandler(deepcopy_host_arrays=False)),
            (jax.Array, ocp.type_handlers.ArrayHandler()))  # so orbax does not warn that it has none
    return ocp.Checkpointer(ocp.PyTreeCheckpointHandler(use_compression=False, use_ocdbt=False, **options))


def _raw_bytes(a: np.ndarray) -> np.ndarray:
    """`a`'s bytes as a flat uint8 view (a copy only if `a` is not C-contiguous)."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(_raw_bytes(a))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays of one shape and dtype hold the same bytes (NaN payloads and -0.0 included)."""
    return np.array_equal(_raw_bytes(a), _raw_bytes(b))


def _entries(flat: dict[str, np.ndarray]) -> tuple[list[dict], dict[int, np.ndarray]]:
    """meta.json's entry per array, and the arrays whose bytes must be stored (by entry index).

    An array bit-identical to an earlier one (EarlyStopping's best weights in
    an epoch that improved, zero-initialized moments) is stored once: its
    entry says `same_as` the earlier entry's index. An array with no elements
    (which orbax refuses) is not stored at all: its entry says `empty`.
    """
    entries, stored, first = [], {}, {}
    for i, (path, a) in enumerate(flat.items()):
        entry = {"path": path, "shape": list(a.shape), "dtype": a.dtype.name, "crc32": _crc(a)}
        j = first.setdefault((a.shape, a.dtype.name, entry["crc32"]), i)
        if a.size == 0:
            entry["empty"] = True
        elif j != i and _same_bytes(a, stored[j]):
            entry["same_as"] = j
        else:
            stored[i] = a
        entries.append(entry)
    return entries, stored


def _pack(entries: list[dict], stored: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
    """What orbax writes: the stored arrays end to end, one flat array per dtype (named by it); each
    stored entry gets its `offset`, in elements, there. orbax's cost is mostly per array (bench/RESULTS.md).
    """
    parts: dict[str, list[np.ndarray]] = {}
    sizes: dict[str, int] = {}
    for i, a in stored.items():
        name = a.dtype.name
        entries[i]["offset"] = sizes.get(name, 0)
        sizes[name] = entries[i]["offset"] + a.size
        parts.setdefault(name, []).append(a.reshape(-1))
    return {name: np.concatenate(group) for name, group in parts.items()}


def _unpacked(restored: dict, entries: list[dict], flat: dict[str, np.ndarray], i: int) -> np.ndarray | None:
    """Entry `i`'s array from what orbax restored (and the entries before it); None if it is not there."""
    entry = entries[i]
    if "same_as" in entry:  # stored once, under an earlier entry
        same_as = entry["same_as"]
        earlier = entries[same_as]["path"] if isinstance(same_as, int) and 0 <= same_as < i else None
        return flat[earlier].copy() if earlier in flat else None
    if entry.get("empty"):
        return np.zeros(entry["shape"], jax.numpy.dtype(entry["dtype"])) if 0 in entry["shape"] else None
    if "offset" in entry:  # format 3: a slice of its dtype's packed array
        packed, offset, size = restored.get(entry["dtype"]), entry["offset"], int(np.prod(entry["shape"]))
        if packed is None or not isinstance(offset, int) or not 0 <= offset <= np.size(packed) - size:
            return None
        return np.asarray(packed)[offset:offset + size].reshape(entry["shape"])
    return np.asarray(restored[f"a{i}"]) if f"a{i}" in restored else None  # formats 1 and 2: an array each


def save_checkpoint(path: str | os.PathLike, tree, meta: dict | None = None) -> str:
    """Write `tree` and plain JSON `meta` as a checkpoint directory at `path`, atomically (replacing any old one)."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    flat = flatten(tree)
    tmp = os.path.join(parent, f".tmp-{name}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    entries, stored = _entries(flat)
    packed = _pack(entries, stored)
    if packed:
        with _checkpointer(saving=True) as ckptr:
            ckptr.save(os.path.join(tmp, ARRAYS_DIR), args=ocp.args.PyTreeSave(packed))
    record = {"format": FORMAT_VERSION, "arrays": entries, **(meta or {})}
    with open(os.path.join(tmp, META_FILE), "w") as f:
        json.dump(record, f, allow_nan=False)
        f.flush()
        os.fsync(f.fileno())
    if os.path.exists(path):
        trash = os.path.join(parent, f".trash-{name}")
        shutil.rmtree(trash, ignore_errors=True)
        os.rename(path, trash)
        os.rename(tmp, path)
        shutil.rmtree(trash)
    else:
        os.rename(tmp, path)
    _fsync_dir(parent)
    return path


def read_meta(path: str | os.PathLike) -> dict:
    """A checkpoint's metadata (no arrays read); CorruptCheckpointError if missing or unreadable."""
    try:
        with open(os.path.join(path, META_FILE)) as f:
            meta = json.load(f)
        meta["arrays"] = [dict(e, shape=tuple(e["shape"])) for e in meta["arrays"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorruptCheckpointError(f"checkpoint {path} has no readable {META_FILE}: {e}") from None
    return meta


def saved_spec(meta: dict) -> dict[str, tuple]:
    """Path -> (shape, dtype) of the arrays a checkpoint's metadata lists."""
    return {e["path"]: (e["shape"], e["dtype"]) for e in meta["arrays"]}


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """(path -> array, metadata) of a checkpoint, every array checked against its shape, dtype and checksum."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    meta = read_meta(path)
    try:
        restored = {}
        if os.path.exists(os.path.join(path, ARRAYS_DIR)):  # absent when every array is empty
            with _checkpointer() as ckptr:
                restored = ckptr.restore(os.path.join(path, ARRAYS_DIR), args=ocp.args.PyTreeRestore())
    except Exception as e:  # orbax/tensorstore raise many types for a damaged file
        raise CorruptCheckpointError(f"checkpoint {path} could not be read: {type(e).__name__}: {e}") from None
    flat, entries = {}, meta["arrays"]
    for i, entry in enumerate(entries):
        try:
            a = _unpacked(restored, entries, flat, i)
            intact = a is not None and a.shape == entry["shape"] and a.dtype.name == entry["dtype"] \
                and _crc(a) == entry["crc32"]
        except (TypeError, ValueError, KeyError, IndexError):  # an altered entry: a bad shape, dtype or offset
            intact = False
        if not intact:
            raise CorruptCheckpointError(f"checkpoint {path} is corrupt: {entry.get('path', f'entry {i}')} does "
                                         "not match its checksum")
        flat[entry["path"]] = a
    return flat, meta


def save_tree(path: str | os.PathLike, tree) -> str:
    """Write `tree` (nested dicts of arrays) as a checksummed checkpoint at `path`, replacing any old one."""
    return save_checkpoint(path, tree)


def load_tree(path: str | os.PathLike, like=None):
    """Read a checkpoint written by `save_tree`; with `like`, restore to its structure (validated), else path -> array."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    flat, _ = load_checkpoint(path)
    return flat if like is None else unflatten(flat, like, where=f"checkpoint {path}")


_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointManager:
    """`step_<n>` checkpoints in `directory`: keeps the last `keep` plus the best by `metric` (if `best_mode`)."""

    def __init__(self, directory: str | os.PathLike, *, keep: int = 3, best_mode: str | None = None):
        validation.positive_int("keep", keep)
        if best_mode not in (None, "min", "max"):
            raise ValueError(f"best_mode must be 'min', 'max' or None, got {best_mode!r}")
        self.directory = os.path.abspath(os.fspath(directory))
        self.keep, self.best_mode = keep, best_mode
        self._cleaned = False

    def path(self, step: int) -> str:
        return os.path.join(self.directory, f"step_{step:09d}")

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints (a `meta.json` present), oldest first."""
        if not os.path.isdir(self.directory):
            return []
        found = (_STEP_DIR.match(n) for n in os.listdir(self.directory))
        return sorted(int(m.group(1)) for m in found
                      if m and os.path.isfile(os.path.join(self.directory, m.group(0), META_FILE)))

    def latest_meta(self) -> dict | None:
        """Metadata of the newest checkpoint (no arrays read), or None if there is none."""
        steps = self.steps()
        return read_meta(self.path(steps[-1])) if steps else None

    def best_step(self) -> int | None:
        """The step whose saved `metric` is best under `best_mode` (None without one)."""
        if self.best_mode is None:
            return None
        scored = []
        for step in self.steps():
            try:
                metric = read_meta(self.path(step)).get("metric")
            except CorruptCheckpointError:
                continue
            if metric is not None:
                scored.append((metric if self.best_mode == "min" else -metric, step))
        return min(scored)[1] if scored else None

    def save(self, step: int, tree, meta: dict | None = None, metric: float | None = None) -> str:
        """Save checkpoint `step` (with `metric` for best-keeping), then drop those no longer kept."""
        if not self._cleaned:  # leftovers of a save or prune that was killed midway
            for name in os.listdir(self.directory) if os.path.isdir(self.directory) else ():
                if name.startswith((".tmp-", ".trash-")):
                    shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
            self._cleaned = True
        path = save_checkpoint(self.path(step), tree, {**(meta or {}), "step": int(step), "metric": metric})
        self._prune()
        return path

    def _prune(self) -> None:
        steps = self.steps()
        kept = set(steps[-self.keep:]) | {self.best_step()}
        for step in steps:
            if step not in kept:
                trash = os.path.join(self.directory, f".trash-step_{step:09d}")
                os.rename(self.path(step), trash)
                shutil.rmtree(trash)

    def restore(self, validate=None) -> tuple[dict[str, np.ndarray], dict] | None:
        """The newest checkpoint that verifies, as (path -> array, metadata); None if there are none.

        `validate(meta)` runs on each candidate's metadata before its arrays are
        read and may raise (e.g. CheckpointMismatchError), which propagates.
        A corrupt checkpoint is skipped with a warning; if none verifies,
        CorruptCheckpointError says so.
        """
        steps = self.steps()
        problems = []
        for step in reversed(steps):
            try:
                meta = read_meta(self.path(step))
                if validate is not None:
                    validate(meta)
                flat, meta = load_checkpoint(self.path(step))
            except CorruptCheckpointError as e:
                problems.append(str(e))
                warnings.warn(f"{e}; falling back to an older checkpoint", RuntimeWarning, stacklevel=2)
                continue
            return flat, meta
        if problems:
            raise CorruptCheckpointError(f"no checkpoint in {self.directory} verifies ({'; '.join(problems)}); "
                                         "move the directory away to start afresh")
        return None
