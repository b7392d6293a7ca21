"""Checkpoints: exact round trip, checksums catch a flipped byte and a truncated file (falling back with a
warning), tree mismatches named, last-K-plus-best keeping, leftovers of a killed save, no unpickling."""
import glob
import json
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxnn import checkpoint as ckpt


def _tree(seed=0, hidden=4):
    rng = np.random.default_rng(seed)
    return {"params": {"dense": {"kernel": jnp.asarray(rng.normal(size=(3, hidden)), jnp.float32),
                                 "bias": jnp.zeros(hidden, jnp.bfloat16)}},
            "step": jnp.int32(7), "key": jax.random.key(seed), "opt": (jnp.ones(2), {"count": jnp.int32(1)})}


def _bit_identical(flat, tree) -> bool:
    """Whether `flat` holds every leaf of `tree` with its dtype and exact bytes (NaN payloads and -0.0 too)."""
    return all(a.dtype == flat[p].dtype and a.tobytes() == flat[p].tobytes() for p, a in ckpt.flatten(tree).items())


def _equal(a, b):
    if ckpt._is_key(a):
        a, b = jax.random.key_data(a), jax.random.key_data(b)
    return a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))


def test_round_trip_is_exact_keys_and_dtypes_included(tmp_path):
    tree = _tree()
    ckpt.save_checkpoint(tmp_path / "c", tree, {"note": "hello"})
    flat, meta = ckpt.load_checkpoint(tmp_path / "c")
    assert meta["note"] == "hello"
    assert list(flat) == ["key", "opt/0", "opt/1/count", "params/dense/bias", "params/dense/kernel", "step"]
    back = ckpt.unflatten(flat, tree)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(tree)
    assert all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(_equal, tree, back)))


def test_identical_arrays_are_written_once_and_restored_to_every_path(tmp_path):
    tree = _tree()
    kernel = tree["params"]["dense"]["kernel"]
    tree["best"] = {"kernel": jnp.array(kernel), "nan": jnp.full(3, jnp.nan)}  # best weights == the current ones
    tree["nan"] = jnp.full(3, jnp.nan)  # NaN != NaN, yet the bytes are the same
    tree["negzero"] = jnp.asarray([-0.0, 0.0, 0.0])  # equal to zeros by value, not by bytes
    tree["zeros"] = jnp.zeros(3)
    ckpt.save_checkpoint(tmp_path / "c", tree)
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    same = {e["path"]: meta["arrays"][e["same_as"]]["path"] for e in meta["arrays"] if "same_as" in e}
    assert same == {"params/dense/kernel": "best/kernel", "nan": "best/nan"}
    with ckpt._checkpointer() as orbax_checkpointer:
        stored = orbax_checkpointer.restore(tmp_path / "c" / "arrays", args=ocp.args.PyTreeRestore())
    sizes = {p: a.size for p, a in ckpt.flatten(tree).items()}
    assert sorted(stored) == ["bfloat16", "float32", "int32", "uint32"]  # one packed array per dtype
    assert sum(a.size for a in stored.values()) == sum(sizes.values()) - sizes["best/kernel"] - sizes["best/nan"]
    flat, _ = ckpt.load_checkpoint(tmp_path / "c")
    assert set(flat) == set(ckpt.flatten(tree))
    assert _bit_identical(flat, tree)
    assert np.signbit(flat["negzero"][0]) and flat["params/dense/kernel"] is not flat["best/kernel"]


@pytest.mark.parametrize("tree", [{"w": jnp.ones((2, 3)), "none": jnp.zeros((0, 4), jnp.bfloat16)},
                                  {"none": jnp.zeros((3, 0), jnp.int32)}], ids=["some", "only-empty"])
def test_arrays_with_no_elements_round_trip_though_orbax_refuses_them(tmp_path, tree):
    ckpt.save_checkpoint(tmp_path / "c", tree)
    flat, meta = ckpt.load_checkpoint(tmp_path / "c")
    assert [e.get("empty", False) for e in meta["arrays"]] == [a.size == 0 for a in ckpt.flatten(tree).values()]
    for path, a in ckpt.flatten(tree).items():
        assert flat[path].shape == a.shape and flat[path].dtype == a.dtype
        np.testing.assert_array_equal(flat[path], a)


def test_a_same_as_entry_pointing_at_other_bytes_is_corrupt(tmp_path):
    tree = {"a": jnp.ones(3), "b": jnp.ones(3), "c": jnp.zeros(3)}
    ckpt.save_checkpoint(tmp_path / "c", tree)
    meta_file = tmp_path / "c" / "meta.json"
    meta = json.loads(meta_file.read_text())
    assert meta["arrays"][1]["same_as"] == 0
    meta["arrays"][2]["same_as"] = 0
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ckpt.CorruptCheckpointError, match="c does not match its checksum"):
        ckpt.load_checkpoint(tmp_path / "c")


def _save_an_array_each(path, tree, compressed: bool) -> None:
    """A checkpoint as formats 1 (zstd) and 2 (uncompressed) wrote it: one orbax array `a<i>` per entry."""
    flat = ckpt.flatten(tree)
    entries = [{"path": p, "shape": list(a.shape), "dtype": a.dtype.name, "crc32": ckpt._crc(a)}
               for p, a in flat.items()]
    handler = ocp.PyTreeCheckpointHandler(use_compression=compressed)
    with ocp.Checkpointer(handler) as orbax_checkpointer:
        orbax_checkpointer.save(path / "arrays", args=ocp.args.PyTreeSave({f"a{i}": a for i, a in
                                                                           enumerate(flat.values())}))
    (path / "meta.json").write_text(json.dumps({"format": 1 if compressed else 2, "arrays": entries}))


@pytest.mark.parametrize("compressed", [True, False], ids=["format-1-zstd", "format-2"])
def test_checkpoints_of_earlier_formats_still_restore(tmp_path, compressed):
    tree = {**_tree(hidden=256), "ones": jnp.ones((256, 256))}  # 256 KB that zstd shrinks to almost nothing
    _save_an_array_each(tmp_path / "old", tree, compressed)
    stored = sum(f.stat().st_size for f in (tmp_path / "old").rglob("*") if f.is_file())
    assert stored < 64_000 if compressed else stored > 256_000
    flat, _ = ckpt.load_checkpoint(tmp_path / "old")
    assert list(flat) == list(ckpt.flatten(tree))
    assert _bit_identical(flat, tree)


def test_packed_checkpoints_written_with_ocdbt_still_restore(tmp_path, monkeypatch):
    """Format 3 as written before OCDBT was turned off: the same meta.json, orbax's OCDBT files under arrays/."""
    tree = _tree(hidden=256)
    with monkeypatch.context() as m:
        m.setattr(ckpt, "_checkpointer",
                  lambda saving=False: ocp.Checkpointer(ocp.PyTreeCheckpointHandler(use_compression=False)))
        ckpt.save_checkpoint(tmp_path / "c", tree)
    assert os.path.exists(tmp_path / "c" / "arrays" / "manifest.ocdbt")
    flat, _ = ckpt.load_checkpoint(tmp_path / "c")
    assert _bit_identical(flat, tree)


@pytest.mark.parametrize("field, value", [("shape", [-1, 4]), ("dtype", "no-such-dtype"), ("offset", "0")])
def test_an_altered_entry_is_corrupt_not_a_crash(tmp_path, field, value):
    ckpt.save_checkpoint(tmp_path / "c", {"a": jnp.ones(3), "b": jnp.arange(4.0)})
    meta_file = tmp_path / "c" / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["arrays"][1][field] = value
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ckpt.CorruptCheckpointError, match="b does not match its checksum"):
        ckpt.load_checkpoint(tmp_path / "c")


def test_a_packed_offset_out_of_range_is_corrupt(tmp_path):
    ckpt.save_checkpoint(tmp_path / "c", {"a": jnp.ones(3), "b": jnp.arange(4.0)})
    meta_file = tmp_path / "c" / "meta.json"
    meta = json.loads(meta_file.read_text())
    assert [e["offset"] for e in meta["arrays"]] == [0, 3]
    meta["arrays"][1]["offset"] = 4  # one element past the packed array's end
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ckpt.CorruptCheckpointError, match="b does not match its checksum"):
        ckpt.load_checkpoint(tmp_path / "c")


def _flip_one_byte(path, values: np.ndarray):
    """Flip one bit inside the stored bytes of `values` (in its packed array's chunk file, stored raw)."""
    raw_values = values.tobytes()
    hits = 0
    for f in glob.glob(f"{path}/arrays/**/*", recursive=True):
        raw = bytearray(open(f, "rb").read()) if os.path.isfile(f) else b""
        at = raw.find(raw_values)
        if at >= 0:
            raw[at + 5] ^= 0x01
            open(f, "wb").write(bytes(raw))
            hits += 1
    assert hits, "the array's bytes were not found"


def _truncate(path, values):
    """Cut every data file of the checkpoint to half its length (a disk filled up mid-write)."""
    del values
    data = [f for f in glob.glob(f"{path}/arrays/*/*") if os.path.basename(f)[0] not in "._"]  # not .zarray
    assert data, "no data files found"
    for f in data:
        os.truncate(f, os.path.getsize(f) // 2)


@pytest.mark.parametrize("damage", [_flip_one_byte, _truncate])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_with_a_warning(tmp_path, damage):
    manager = ckpt.CheckpointManager(tmp_path, keep=3)
    for step in (10, 20):
        manager.save(step, _tree(seed=step, hidden=1024), {"epoch": step})
    damage(manager.path(20), np.asarray(_tree(seed=20, hidden=1024)["params"]["dense"]["kernel"]))
    with pytest.raises(ckpt.CorruptCheckpointError, match="step_000000020"):
        ckpt.load_checkpoint(manager.path(20))
    with pytest.warns(RuntimeWarning, match="step_000000020.*falling back"):
        flat, meta = manager.restore()
    assert meta["step"] == 10 and meta["epoch"] == 10
    np.testing.assert_array_equal(flat["params/dense/kernel"],
                                  np.asarray(_tree(seed=10, hidden=1024)["params"]["dense"]["kernel"]))


def test_no_verifying_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    manager = ckpt.CheckpointManager(tmp_path)
    manager.save(5, _tree(hidden=1024))
    _flip_one_byte(manager.path(5), np.asarray(_tree(hidden=1024)["params"]["dense"]["kernel"]))
    with pytest.warns(RuntimeWarning), pytest.raises(ckpt.CorruptCheckpointError, match="no checkpoint in .* verifies"):
        manager.restore()


def test_missing_or_garbled_metadata_counts_as_corrupt(tmp_path):
    ckpt.save_checkpoint(tmp_path / "c", _tree())
    (tmp_path / "c" / "meta.json").write_text("{not json")
    with pytest.raises(ckpt.CorruptCheckpointError, match="no readable meta.json"):
        ckpt.load_checkpoint(tmp_path / "c")


@pytest.mark.parametrize("like,match", [
    (_tree(hidden=5), r"first mismatch at params/dense/bias: checkpoint has shape \(4,\) bfloat16, the model \(5,\) bfloat16"),
    ({**_tree(), "extra": jnp.zeros(3)}, r"extra \(3,\) is in the model but not in the checkpoint"),
    ({k: v for k, v in _tree().items() if k != "opt"}, r"opt/0 \(2,\) is in the checkpoint but not in the model"),
])
def test_a_different_tree_is_refused_naming_the_first_mismatched_path(tmp_path, like, match):
    ckpt.save_checkpoint(tmp_path / "c", _tree())
    flat, meta = ckpt.load_checkpoint(tmp_path / "c")
    with pytest.raises(ckpt.CheckpointMismatchError, match=match):
        ckpt.check_structure(ckpt.saved_spec(meta), like)
    with pytest.raises(ckpt.CheckpointMismatchError, match=match):
        ckpt.unflatten(flat, like)


def test_keeps_the_last_k_plus_the_best(tmp_path):
    manager = ckpt.CheckpointManager(tmp_path, keep=2, best_mode="min")
    for step, metric in [(1, 0.9), (2, 0.3), (3, 0.5), (4, 0.6), (5, 0.7)]:
        manager.save(step, {"w": jnp.full(2, step)}, metric=metric)
    assert manager.steps() == [2, 4, 5]
    assert manager.best_step() == 2
    plain = ckpt.CheckpointManager(tmp_path / "plain", keep=2)
    for step in range(1, 5):
        plain.save(step, {"w": jnp.zeros(1)}, metric=float(step))
    assert plain.steps() == [3, 4]


def test_leftovers_of_a_killed_save_are_ignored_then_cleaned(tmp_path):
    manager = ckpt.CheckpointManager(tmp_path)
    manager.save(1, _tree())
    os.makedirs(tmp_path / ".tmp-step_000000002" / "arrays")  # what a kill mid-save leaves
    os.makedirs(tmp_path / "step_000000003")  # a directory without meta.json is not a checkpoint
    assert manager.steps() == [1]
    assert manager.restore()[1]["step"] == 1
    ckpt.CheckpointManager(tmp_path).save(4, _tree())
    assert not os.path.exists(tmp_path / ".tmp-step_000000002")


def test_loading_never_unpickles(tmp_path, monkeypatch):
    ckpt.save_checkpoint(tmp_path / "c", _tree())
    json.loads((tmp_path / "c" / "meta.json").read_text())  # plain JSON metadata

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load called pickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    flat, _ = ckpt.load_checkpoint(tmp_path / "c")
    assert flat["step"] == 7


def test_save_tree_and_load_tree(tmp_path):
    tree = {"params": {"w": jnp.arange(4.0)}}
    ckpt.save_tree(tmp_path / "final", tree)
    ckpt.save_tree(tmp_path / "final", {"params": {"w": jnp.arange(4.0) + 1}})  # replaces
    np.testing.assert_array_equal(ckpt.load_tree(tmp_path / "final", tree)["params"]["w"], np.arange(4.0) + 1)
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        ckpt.load_tree(tmp_path / "nothing")
