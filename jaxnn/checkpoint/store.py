"""One checkpoint directory: orbax's sharded save of the arrays, then a sealed `meta.json`; verified restore.

    <checkpoint>/arrays/     orbax's checkpoint (each process writes the shards it holds; OCDBT, uncompressed)
    <checkpoint>/meta.json   written by process 0 after orbax's commit, last: without it the checkpoint is
                             incomplete. Holds the format, each array's path, shape, dtype and on-device
                             fingerprint (`fingerprint.py`), the mesh and shardings it was saved from, the
                             size and SHA-256 of every file orbax wrote (`files`: damage to a file orbax
                             would not even read is found too), the caller's metadata, and a SHA-256 of
                             all of that (`checksum`).

Arrays are stored as `a<i>` in the order of `meta.json`'s entries (PRNG keys as key data). Replicated
arrays of at most `INLINE_BYTES` (the step, optimizer counters, PRNG keys, running totals, biases, small
kernels) are stored in their entry instead (`value`: their bytes in hex), as orbax's `aggregate` once stored
scalars in its metadata file: each array orbax writes costs a save about 1.2 ms of CPU (bench/RESULTS.md).
Arrays without elements, which orbax refuses, are only an entry. Restoring reads each array straight onto
the sharding its target names, whatever mesh wrote it, then checks every fingerprint on the devices:
orbax alone restored a flipped byte silently (DESIGN.md). No pickle anywhere.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.checkpoint import late_errors
from jaxnn.checkpoint.fingerprint import summarize
from jaxnn.checkpoint.trees import CheckpointError, is_key, leaves, path_str

FORMAT_VERSION = 5  # 5: small arrays in meta.json; 4: all in orbax (still read); 1-3: host-packed, dropped
READ_FORMATS = (4, FORMAT_VERSION)
INLINE_BYTES = 4096  # a page: orbax spends ~1.2 ms of CPU per array it writes, meta.json microseconds
META_FILE = "meta.json"
ARRAYS_DIR = "arrays"


class CorruptCheckpointError(CheckpointError):
    """The checkpoint cannot be read back exactly as written (truncated, altered, incomplete or unreadable)."""


class CheckpointWriteError(CheckpointError):
    """Writing a checkpoint failed (disk full, permissions); the checkpoints written before are intact."""


class NonFiniteStateError(ValueError):
    """The tree to save holds NaN or inf; it is never written."""


def orbax_checkpointer(asynchronous: bool):
    """orbax's checkpointer for these checkpoints: uncompressed (zstd cost a third of a save's CPU for ~8%
    of float weights' bytes, bench/RESULTS.md); `asynchronous` writes after `save` returns. Its barriers
    name every process, so orbax syncs through the distributed service's barriers rather than a device
    collective: saves start on a background thread while the training steps run theirs. Its array handler
    writes neither a sharding file nor per-host array metadata: restore always targets the caller's
    shardings and checks the fingerprints, and the two cost a third of a small state's save CPU
    (bench/RESULTS.md). A failed save or restore prints no late errors of its operations still in flight
    (`late_errors`)."""
    import orbax.checkpoint as ocp

    late_errors.install()

    processes = ocp.options.MultiprocessingOptions(active_processes=set(range(jax.process_count())))
    arrays = ocp.type_handlers.ArrayHandler(enable_write_sharding_file=False, array_metadata_store=None)
    handler = ocp.PyTreeCheckpointHandler(
        use_compression=False, multiprocessing_options=processes,
        type_handler_registry=ocp.type_handlers.create_type_handler_registry((jax.Array, arrays)))
    if not asynchronous:
        return ocp.Checkpointer(handler, multiprocessing_options=processes)
    return ocp.AsyncCheckpointer(handler, multiprocessing_options=processes)


def save_args(arrays: dict):
    """orbax's save arguments for `prepare`'s arrays."""
    import orbax.checkpoint as ocp

    return ocp.args.PyTreeSave(arrays)


def _canonical(record: dict) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def seal(record: dict) -> dict:
    """`record` with `checksum`: the SHA-256 of its canonical JSON, so no field can be edited unseen."""
    return {**record, "checksum": hashlib.sha256(_canonical(record)).hexdigest()}


def _file_digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def manifest(directory: str) -> dict[str, list]:
    """Relative path -> [size, SHA-256] of every file under `directory`."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            full = os.path.join(root, name)
            files[os.path.relpath(full, directory)] = [os.path.getsize(full), _file_digest(full)]
    return files


def _check_files(path: str, meta: dict) -> None:
    arrays = os.path.join(path, ARRAYS_DIR)
    for name, (size, digest) in sorted(meta.get("files", {}).items()):
        full = os.path.join(arrays, name)
        try:
            intact = os.path.getsize(full) == size and _file_digest(full) == digest
        except OSError:
            intact = False
        if not intact:
            raise CorruptCheckpointError(f"checkpoint {path} is corrupt: {ARRAYS_DIR}/{name} is missing or altered")


def _sharding_text(x) -> str:
    sharding = getattr(x, "sharding", None)
    return str(getattr(sharding, "spec", "single device")) if sharding is not None else "host"


def _mesh_text(arrays) -> dict | None:
    for a in arrays:
        mesh = getattr(getattr(a, "sharding", None), "mesh", None)
        if mesh is not None:
            return {"axes": dict(mesh.shape), "devices": int(mesh.size), "processes": jax.process_count()}
    return None


def prepare(tree, meta: dict | None = None) -> tuple[dict, dict]:
    """(meta.json's record, to `seal` once written, and orbax's `a<i>` arrays) of `tree`; NonFiniteStateError if
    any array is not finite.

    The fingerprints and the finiteness check run on the arrays' devices; only scalars reach the host.
    """
    flat = {p: (x if isinstance(x, jax.Array) else jnp.asarray(x)) for p, x in leaves(tree).items()}
    prints, finite = summarize(list(flat.values()))
    bad = [p for p, ok in zip(flat, finite) if not ok]
    if bad:
        raise NonFiniteStateError(f"{bad[0]} holds NaN or inf")
    inline = [p for p, x in flat.items() if x.size and x.nbytes <= INLINE_BYTES and x.is_fully_replicated]
    values = dict(zip(inline, jax.device_get([flat[p].addressable_data(0) for p in inline])))  # one fetch
    entries, arrays = [], {}
    for i, ((path, x), fp) in enumerate(zip(flat.items(), prints)):
        entry = {"path": path, "shape": list(x.shape), "dtype": x.dtype.name, "fingerprint": fp,
                 "sharding": _sharding_text(x)}
        if path in values:
            entry["value"] = np.asarray(values[path]).tobytes().hex()
        elif x.size:
            arrays[f"a{i}"] = x
        entries.append(entry)
    record = {"format": FORMAT_VERSION, "mesh": _mesh_text(flat.values()), "arrays": entries, **(meta or {})}
    return json.loads(_canonical(record)), arrays  # a copy: later changes to the caller's lists do not reach it


def write_meta(directory: str, record: dict) -> None:
    """Seal `record` with the manifest of `directory`'s arrays and write it as `meta.json`, atomically and
    durably (process 0 only, after orbax's commit)."""
    arrays = os.path.join(directory, ARRAYS_DIR)
    record = seal({**record, "files": manifest(arrays) if os.path.isdir(arrays) else {}})
    tmp = os.path.join(directory, f".tmp-{META_FILE}")
    with open(tmp, "w") as f:
        f.write(_canonical(record).decode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(directory, META_FILE))
    fsync_dir(directory)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_error(path: str, error: BaseException) -> CheckpointWriteError:
    """One line for a failed write of checkpoint `path` (disk full named as such)."""
    text = str(error)
    if getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in text:
        reason = "no space left on device"
    else:
        reason = f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
    return CheckpointWriteError(f"writing checkpoint {path} failed ({reason}); the checkpoints written before it "
                                "are intact: free space or fix the cause, then run the same command again")


def read_meta(path: str | os.PathLike) -> dict:
    """A checkpoint's verified metadata (no arrays read); CorruptCheckpointError if missing, unreadable or altered."""
    path = os.fspath(path)
    try:
        with open(os.path.join(path, META_FILE), "rb") as f:
            record = json.loads(f.read())
        version, readable = record.get("format"), " and ".join(map(str, READ_FORMATS))
        if version in range(1, READ_FORMATS[0]):
            raise CorruptCheckpointError(f"checkpoint {path} is in format {version}, written by an older jaxnn; "
                                         f"this one reads formats {readable}")
        if version not in READ_FORMATS:
            raise CorruptCheckpointError(f"checkpoint {path} is in format {version!r}, unknown to this jaxnn (it "
                                         f"reads formats {readable}): written by a newer one?")
        sealed = {k: v for k, v in record.items() if k != "checksum"}
        intact = seal(sealed)["checksum"] == record["checksum"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        reason = "has no meta.json (incomplete)" if isinstance(e, FileNotFoundError) else \
            f"has no readable {META_FILE} ({type(e).__name__})"
        raise CorruptCheckpointError(f"checkpoint {path} {reason}") from None
    if not intact:
        raise CorruptCheckpointError(f"checkpoint {path}: {META_FILE} does not match its checksum (altered)")
    return record


def saved_spec(meta: dict) -> dict[str, tuple]:
    """Path -> (shape, dtype) of the arrays a checkpoint's metadata lists."""
    return {e["path"]: (tuple(e["shape"]), e["dtype"]) for e in meta["arrays"]}


def target(x) -> jax.ShapeDtypeStruct:
    """Where a live leaf's saved value goes: its shape, dtype and sharding (the current mesh's)."""
    if is_key(x):
        x = jax.eval_shape(jax.random.key_data, x) if not isinstance(x, jax.Array) else jax.random.key_data(x)
    sharding = getattr(x, "sharding", None) or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)


def targets(tree, prefix: str = "") -> dict[str, jax.ShapeDtypeStruct]:
    """Path -> `target` of every leaf of a live tree."""
    return {prefix + path_str(p): target(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _zeros(t: jax.ShapeDtypeStruct) -> jax.Array:
    return jax.jit(lambda: jnp.zeros(t.shape, t.dtype), out_shardings=t.sharding)()


def _inlined(entry: dict, t: jax.ShapeDtypeStruct) -> jax.Array:
    """An array stored in its meta.json entry, placed on `t`'s sharding."""
    value = np.frombuffer(bytes.fromhex(entry["value"]), jnp.dtype(entry["dtype"])).reshape(entry["shape"])
    return jax.make_array_from_callback(t.shape, t.sharding, lambda index: value[index])


def restore(path: str | os.PathLike, where, meta: dict | None = None) -> tuple[dict[str, jax.Array], dict]:
    """(path -> array placed by `where(entry)`, a ShapeDtypeStruct with sharding, and the metadata), every array's
    fingerprint checked on its devices; CorruptCheckpointError for anything that does not read back exactly."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(os.fspath(path))
    meta = read_meta(path) if meta is None else meta
    entries = meta["arrays"]
    want = {}
    for i, entry in enumerate(entries):
        t = where(entry)
        if tuple(t.shape) != tuple(entry["shape"]) or np.dtype(t.dtype).name != entry["dtype"]:
            raise CorruptCheckpointError(f"checkpoint {path}: {entry['path']} is listed as {entry['shape']} "
                                         f"{entry['dtype']}, its target is {t.shape} {t.dtype}")
        want[f"a{i}"] = t
    stored = {k: t for (k, t), e in zip(want.items(), entries)
              if np.prod(t.shape, dtype=np.int64) and "value" not in e}
    _check_files(path, meta)
    try:
        restored = {}
        if stored:
            args = ocp.args.PyTreeRestore(stored, restore_args=ocp.checkpoint_utils.construct_restore_args(stored))
            with orbax_checkpointer(asynchronous=False) as ckptr:
                restored = ckptr.restore(os.path.join(path, ARRAYS_DIR), args=args)
        inlined = {k: _inlined(e, t) for (k, t), e in zip(want.items(), entries) if "value" in e}
    except Exception as e:  # orbax/tensorstore raise many types for a damaged file
        raise CorruptCheckpointError(f"checkpoint {path} could not be read ({type(e).__name__}: "
                                     f"{str(e).splitlines()[0] if str(e) else ''})") from None
    found = {**restored, **inlined}
    arrays = [found[k] if k in found else _zeros(t) for k, t in want.items()]
    if sorted(restored) != sorted(stored) or any(a.shape != t.shape for a, t in zip(arrays, want.values())):
        raise CorruptCheckpointError(f"checkpoint {path} does not hold the arrays its {META_FILE} lists")
    prints, _ = summarize(arrays)
    for entry, fp in zip(entries, prints):
        if fp != entry["fingerprint"]:
            raise CorruptCheckpointError(f"checkpoint {path} is corrupt: {entry['path']} does not match its "
                                         "fingerprint")
    return {e["path"]: a for e, a in zip(entries, arrays)}, meta


def is_primary() -> bool:
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait for every process (a no-op in a single-process run)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def remove(path: str) -> None:
    """Delete a checkpoint directory: renamed away first (atomic), so a kill midway leaves no half checkpoint."""
    parent, name = os.path.split(path)
    trash = os.path.join(parent, f".trash-{name}")
    shutil.rmtree(trash, ignore_errors=True)
    if os.path.exists(path):
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
