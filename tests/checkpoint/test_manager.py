"""CheckpointManager: the corruption matrix (every file of a checkpoint flipped, truncated, emptied, deleted:
a warning and the previous checkpoint, never different values, never a refusal while a valid one exists),
last-K-plus-best keeping, leftovers of killed saves, and a full disk (one line, older checkpoints intact)."""
import os
import pathlib
import shutil
import subprocess
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import checkpoint as ckpt


def _tree(seed, hidden=64):
    rng = np.random.default_rng(seed)
    return {"params": {"kernel": jnp.asarray(rng.normal(size=(32, hidden)), jnp.float32),
                       "bias": jnp.asarray(rng.normal(size=hidden), jnp.bfloat16)},
            "step": jnp.int32(seed), "key": jax.random.key(seed)}


def _where(entry):
    return ckpt.target(jax.ShapeDtypeStruct(entry["shape"], entry["dtype"]))


def _bytes(flat) -> dict:
    return {p: np.asarray(a).tobytes() for p, a in flat.items()}


def _saved(directory, steps=(10, 20)) -> ckpt.CheckpointManager:
    manager = ckpt.CheckpointManager(directory, keep=3)
    for step in steps:
        manager.save(step, _tree(step), {"epoch": step})
    manager.close()
    return manager


def _flip(f: pathlib.Path):
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    f.write_bytes(bytes(raw))


DAMAGE = {"flip": _flip, "truncate": lambda f: os.truncate(f, f.stat().st_size // 2),
          "empty": lambda f: os.truncate(f, 0), "delete": os.remove}


def _named(root: pathlib.Path) -> dict[str, pathlib.Path]:
    """Every file of a checkpoint by a stable name: orbax names data files by a random hash, so those are
    named `<folder>/d/#<k>`, k their rank by size within the folder."""
    names = {}
    for f in sorted(root.rglob("*"), key=lambda f: (str(f.parent), f.stat().st_size, f.name)):
        if f.is_file():
            rel = f.relative_to(root)
            if rel.parent.name == "d":
                rel = rel.parent / f"#{sum(n.startswith(str(rel.parent) + '/#') for n in names)}"
            names[str(rel)] = f
    return names


def _file(named: dict[str, pathlib.Path], name: str) -> pathlib.Path:
    """The file `name` names; orbax's OCDBT writer splits the same arrays into a varying number of data
    files (one per concurrent flush), so `d/#k` wraps around the data files this save wrote (`#-1`: the
    largest)."""
    if name in named or "/d/#" not in name:
        return named[name]
    folder, k = name.rsplit("#", 1)
    data = [n for n in named if n.startswith(folder + "#")]
    return named[f"{folder}#{int(k) % len(data)}"]


def _files(directory) -> list[str]:
    """The names to damage: every file, but of each folder's data files only the smallest and the largest
    (`#0`, `#-1`), whose count varies from save to save, so that the test ids do not."""
    names = set()
    for name in _named(pathlib.Path(_saved(directory, (20,)).path(20))):
        folder = name.rsplit("#", 1)[0]
        names.update((folder + "#0", folder + "#-1") if "/d/#" in name else (name,))
    return sorted(names)


_MATRIX = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"jaxnn-matrix-{os.getpid()}"
FILES = _files(_MATRIX)
shutil.rmtree(_MATRIX, ignore_errors=True)


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("name", FILES)
def test_corruption_matrix_falls_back_with_a_warning_never_silently_different(tmp_path, name, damage):
    manager = _saved(tmp_path)
    DAMAGE[damage](_file(_named(pathlib.Path(manager.path(20))), name))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flat, meta = manager.restore(_where)
    fallback = [w for w in caught if "step_000000020" in str(w.message) and "falling back" in str(w.message)]
    assert meta["step"] == 10 and len(fallback) == 1, [str(w.message) for w in caught]
    assert "\n" not in str(fallback[0].message)
    assert _bytes(flat) == _bytes(ckpt.flatten(_tree(10)))


def test_no_verifying_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    manager = _saved(tmp_path, (5, 6))
    _flip(_named(pathlib.Path(manager.path(5)))["arrays/d/#0"])
    os.remove(pathlib.Path(manager.path(6), "meta.json"))  # incomplete: as a kill before meta.json leaves it
    with pytest.warns(RuntimeWarning), pytest.raises(ckpt.CorruptCheckpointError, match="no checkpoint in .* verifies"):
        manager.restore(_where)


def test_only_incomplete_checkpoints_start_afresh_with_a_warning(tmp_path):
    manager = _saved(tmp_path, (5,))
    os.remove(pathlib.Path(manager.path(5), "meta.json"))
    with pytest.warns(RuntimeWarning, match="step_000000005 has no meta.json .incomplete"):
        assert manager.restore(_where) is None


def test_keeps_the_last_k_plus_the_best(tmp_path):
    manager = ckpt.CheckpointManager(tmp_path, keep=2, best_mode="min")
    for step, metric in [(1, 0.9), (2, 0.3), (3, 0.5), (4, 0.6), (5, 0.7)]:
        manager.save(step, {"w": jnp.full(2, step)}, metric=metric)
    manager.wait()
    assert manager.steps() == [2, 4, 5] and manager.best_step() == 2
    plain = ckpt.CheckpointManager(tmp_path / "plain", keep=2)
    for step in range(1, 5):
        plain.save(step, {"w": jnp.zeros(1)}, metric=float(step))
    plain.close()
    assert plain.steps() == [3, 4]


def test_leftovers_of_killed_saves_and_later_lives_are_cleaned_before_the_next_save(tmp_path):
    _saved(tmp_path, (1, 9))
    os.makedirs(tmp_path / ".trash-step_000000004")       # a kill mid-prune
    os.makedirs(tmp_path / "step_000000003" / "arrays")   # a kill before meta.json: incomplete
    manager = ckpt.CheckpointManager(tmp_path, keep=5)
    assert manager.steps() == [1, 9]
    manager.save(5, _tree(5))  # resumed from step 1 after step 9 was lost: step 9 is a later life, redone
    manager.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LOCK", "step_000000001", "step_000000005"]


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (needs root; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_fails_in_one_line_keeps_older_checkpoints_and_resumes_bit_identical(small_disk):
    manager = ckpt.CheckpointManager(small_disk / "ckpt", keep=10)
    manager.save(1, _tree(1, hidden=2048))  # 256 KB
    manager.wait()
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (2**21 - 3 * 2**18 - os.path.getsize(small_disk / "ckpt" / "LOCK")))
    with pytest.raises(ckpt.CheckpointWriteError) as failed:
        manager.save(2, _tree(2, hidden=4096))
        manager.wait()
    message = str(failed.value)
    assert "\n" not in message and "no space left on device" in message and "step_000000002" in message
    assert manager.steps() == [1]
    flat, meta = manager.restore(_where)
    assert meta["step"] == 1 and _bytes(flat) == _bytes(ckpt.flatten(_tree(1, hidden=2048)))
    filler.unlink()  # space freed: the same save now succeeds
    manager.save(2, _tree(2, hidden=4096))
    manager.close()
    assert manager.steps() == [1, 2]
    flat, meta = manager.restore(_where)
    assert meta["step"] == 2 and _bytes(flat) == _bytes(ckpt.flatten(_tree(2, hidden=4096)))
