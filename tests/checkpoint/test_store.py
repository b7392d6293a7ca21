"""One checkpoint: exact round trip (keys, bfloat16, empty arrays), save_tree/load_tree, sealed metadata, tree
mismatches named, non-finite states refused, other formats refused in one line, no unpickling, no orbax
sharding file written (and checkpoints that have one still read), small arrays in meta.json (format 4's
layout still read)."""
import json
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import checkpoint as ckpt
from jaxnn.checkpoint import store


def _tree(seed=0, hidden=4):
    rng = np.random.default_rng(seed)
    return {"params": {"dense": {"kernel": jnp.asarray(rng.normal(size=(300, hidden)), jnp.float32),
                                 "bias": jnp.zeros(hidden, jnp.bfloat16)}},
            "step": jnp.int32(7), "key": jax.random.key(seed), "opt": (jnp.ones(2), {"count": jnp.int32(1)}),
            "none": jnp.zeros((0, 4), jnp.bfloat16)}


def _same(a, b) -> bool:
    if ckpt.is_key(a):
        a, b = jax.random.key_data(a), jax.random.key_data(b)
    return a.dtype == b.dtype and a.shape == b.shape and np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_round_trip_is_exact_keys_dtypes_and_empty_arrays_included(tmp_path):
    tree = _tree()
    tree["negzero"] = jnp.asarray([-0.0, 0.0])
    ckpt.save_tree(tmp_path / "c", tree)
    back = ckpt.load_tree(tmp_path / "c", tree)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(tree)
    assert all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(_same, tree, back)))
    flat = ckpt.load_tree(tmp_path / "c")
    assert list(flat) == list(ckpt.flatten(tree)) and all(isinstance(a, np.ndarray) for a in flat.values())
    assert np.signbit(flat["negzero"][0])


def test_saves_write_no_sharding_file_and_still_read_checkpoints_that_have_one(tmp_path, monkeypatch):
    """orbax's sharding file and per-host array metadata are not written (restore targets the caller's
    shardings); checkpoints written with them, as before, restore exactly."""
    import orbax.checkpoint as ocp

    tree = _tree()
    ckpt.save_tree(tmp_path / "new", tree)
    written = {p.name for p in (tmp_path / "new").rglob("*")}
    assert "_sharding" not in written and "array_metadatas" not in written

    def with_orbax_defaults(asynchronous):  # the handler as it was before: sharding file and array metadata
        handler = ocp.PyTreeCheckpointHandler(use_compression=False)
        return ocp.AsyncCheckpointer(handler) if asynchronous else ocp.Checkpointer(handler)

    with monkeypatch.context() as patch:
        patch.setattr(store, "orbax_checkpointer", with_orbax_defaults)
        ckpt.save_tree(tmp_path / "old", tree)
    written = {p.name for p in (tmp_path / "old").rglob("*")}
    assert "_sharding" in written and "array_metadatas" in written
    back = ckpt.load_tree(tmp_path / "old", tree)
    assert all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(_same, tree, back)))


def test_save_tree_replaces_and_load_tree_needs_a_checkpoint(tmp_path):
    ckpt.save_tree(tmp_path / "final", {"w": jnp.arange(4.0)})
    ckpt.save_tree(tmp_path / "final", {"w": jnp.arange(4.0) + 1})
    np.testing.assert_array_equal(ckpt.load_tree(tmp_path / "final")["w"], np.arange(4.0) + 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        ckpt.load_tree(tmp_path / "nothing")


def test_a_save_that_fails_inside_orbax_leaves_nothing_half_written(tmp_path, monkeypatch):
    ckpt.save_tree(tmp_path / "final", {"w": jnp.arange(4.0)})
    full = "RESOURCE_EXHAUSTED: Error writing \"a1/0.0\": No space left on device [os_error_code='28']"

    def refuse(*args, **kwargs):
        raise ValueError(full)  # how orbax (tensorstore) reports a full disk

    monkeypatch.setattr(store, "save_args", refuse)
    with pytest.raises(ckpt.CheckpointWriteError, match="no space left on device.*intact"):
        ckpt.save_tree(tmp_path / "final", {"w": jnp.arange(100_000.0)})  # big enough for orbax
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # no .tmp-final; the old one stays
    np.testing.assert_array_equal(ckpt.load_tree(tmp_path / "final")["w"], np.arange(4.0))


def test_metadata_records_fingerprints_shardings_and_a_checksum(tmp_path):
    ckpt.save_tree(tmp_path / "c", _tree())
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["format"] == ckpt.FORMAT_VERSION and len(meta["checksum"]) == 64
    kernel = next(e for e in meta["arrays"] if e["path"] == "params/dense/kernel")
    assert kernel["fingerprint"] == ckpt.summarize([_tree()["params"]["dense"]["kernel"]])[0][0]
    assert kernel["shape"] == [300, 4] and kernel["dtype"] == "float32"


@pytest.mark.parametrize("field,value", [("step", 8), ("note", "other"), ("arrays", [])])
def test_an_edited_meta_json_is_detected(tmp_path, field, value):
    manager = ckpt.CheckpointManager(tmp_path)
    manager.save(7, _tree(), {"note": "hello"})
    manager.close()
    meta_file = tmp_path / "step_000000007" / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta[field] = value
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ckpt.CorruptCheckpointError, match="meta.json does not match its checksum"):
        ckpt.read_meta(meta_file.parent)


@pytest.mark.parametrize("version,match", [
    (3, "is in format 3, written by an older jaxnn; this one reads formats 4 and 5"),
    (6, "is in format 6, unknown to this jaxnn"),
])
def test_a_checkpoint_of_another_format_is_refused_in_one_line(tmp_path, version, match):
    (tmp_path / "c").mkdir()
    record = store.seal({"format": version, "arrays": []}) if version > 3 else {"format": version, "arrays": []}
    (tmp_path / "c" / "meta.json").write_text(json.dumps(record))
    with pytest.raises(ckpt.CorruptCheckpointError, match=match):
        ckpt.load_tree(tmp_path / "c")


def test_small_replicated_arrays_are_stored_in_meta_json_and_the_rest_by_orbax(tmp_path):
    """Scalars, keys and other arrays of at most 4 KiB skip orbax (each array it writes costs a save CPU)."""
    import orbax.checkpoint as ocp

    tree = _tree()
    tree["negzero"] = jnp.asarray([-0.0, 0.0])
    ckpt.save_tree(tmp_path / "c", tree)
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    inline = {e["path"] for e in meta["arrays"] if "value" in e}
    assert inline == {"step", "key", "opt/0", "opt/1/count", "params/dense/bias", "negzero"}
    in_orbax = ocp.PyTreeCheckpointer().metadata(tmp_path / "c" / "arrays").item_metadata.tree
    assert sorted(in_orbax) == [f"a{[e['path'] for e in meta['arrays']].index('params/dense/kernel')}"]
    assert all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(_same, tree, ckpt.load_tree(tmp_path / "c", tree))))


def test_checkpoints_of_format_4_with_every_array_in_orbax_still_restore(tmp_path, monkeypatch):
    tree = _tree()
    with monkeypatch.context() as patch:
        patch.setattr(store, "INLINE_BYTES", 0)
        patch.setattr(store, "FORMAT_VERSION", 4)
        ckpt.save_tree(tmp_path / "old", tree)
    meta = json.loads((tmp_path / "old" / "meta.json").read_text())
    assert meta["format"] == 4 and not any("value" in e for e in meta["arrays"])
    assert all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(_same, tree, ckpt.load_tree(tmp_path / "old", tree))))


def test_an_altered_value_in_meta_json_is_caught_by_its_fingerprint(tmp_path):
    """Resealed after the edit (so the checksum passes): the on-device fingerprint still finds it."""
    ckpt.save_tree(tmp_path / "c", _tree())
    meta_file = tmp_path / "c" / "meta.json"
    meta = {k: v for k, v in json.loads(meta_file.read_text()).items() if k != "checksum"}
    step = next(e for e in meta["arrays"] if e["path"] == "step")
    step["value"] = np.int32(8).tobytes().hex()
    meta_file.write_text(json.dumps(store.seal(meta)))
    with pytest.raises(ckpt.CorruptCheckpointError, match="step does not match its fingerprint"):
        ckpt.load_tree(tmp_path / "c", _tree())


@pytest.mark.parametrize("like,match", [
    ({**_tree(), "params": _tree(hidden=5)["params"]},
     r"first mismatch at params/dense/bias: checkpoint has shape \(4,\) bfloat16, the model \(5,\) bfloat16"),
    ({**_tree(), "extra": jnp.zeros(3)}, r"extra \(3,\) is in the model but not in the checkpoint"),
    ({k: v for k, v in _tree().items() if k != "opt"}, r"opt/0 \(2,\) is in the checkpoint but not in the model"),
])
def test_a_different_tree_is_refused_naming_the_first_mismatched_path(tmp_path, like, match):
    ckpt.save_tree(tmp_path / "c", _tree())
    with pytest.raises(ckpt.CheckpointMismatchError, match=match):
        ckpt.load_tree(tmp_path / "c", like)


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf, -jnp.inf])
def test_a_tree_holding_nan_or_inf_is_never_written(tmp_path, bad):
    tree = _tree()
    tree["opt"] = (jnp.ones(2).at[1].set(bad), tree["opt"][1])
    with pytest.raises(ckpt.NonFiniteStateError, match="opt/0 holds NaN or inf"):
        ckpt.save_tree(tmp_path / "c", tree)
    manager = ckpt.CheckpointManager(tmp_path / "m")
    with pytest.raises(ckpt.NonFiniteStateError):
        manager.save(1, tree)
    assert not (tmp_path / "c").exists() and manager.steps() == []


def test_loading_never_unpickles(tmp_path, monkeypatch):
    ckpt.save_tree(tmp_path / "c", _tree())

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint load called pickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    assert ckpt.load_tree(tmp_path / "c")["step"] == 7
