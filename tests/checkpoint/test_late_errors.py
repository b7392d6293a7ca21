"""After a failed orbax save: tensorstore's callbacks into orbax's closed event loop and asyncio's log of
orbax's unretrieved gathers are dropped; any other unraisable exception or asyncio log still gets through."""
import asyncio
import gc
import logging
import os
import sys
import time
import types
import warnings

import jax
import numpy as np

from jaxnn import checkpoint as ckpt
from jaxnn.checkpoint import late_errors, store


def _unraisable(exc: BaseException):
    """What `sys.unraisablehook` is given (its type is not public)."""
    return types.SimpleNamespace(exc_type=type(exc), exc_value=exc, exc_traceback=exc.__traceback__, err_msg=None,
                                 object=None)


def _refusal() -> RuntimeError:
    """The refusal as tensorstore's thread meets it: raised in `call_soon_threadsafe`, no Python caller."""
    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon_threadsafe(print)
    except RuntimeError as e:
        e.__traceback__ = e.__traceback__.tb_next  # drop this function's frame: the caller is C++
        return e
    raise AssertionError("a closed loop accepted a callback")


def test_only_the_late_callback_refusal_is_dropped(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: seen.append(unraisable.exc_value))
    monkeypatch.setattr(late_errors, "_installed", False)
    late_errors.install()
    late_errors.install()  # once: a second call does not chain twice
    refusal = _refusal()
    sys.unraisablehook(_unraisable(refusal))
    assert seen == []
    elsewhere = RuntimeError("Event loop is closed")  # the same words from other code: passed on
    try:
        raise elsewhere
    except RuntimeError:
        pass
    other = ValueError("boom")
    for exc in (elsewhere, other):
        sys.unraisablehook(_unraisable(exc))
    assert seen == [elsewhere, other]


def _raised_in(filename: str) -> ValueError:
    try:
        exec(compile("raise ValueError('RESOURCE_EXHAUSTED: no space')", filename, "exec"))
    except ValueError as e:
        return e
    raise AssertionError("nothing raised")


def _record(message: str, exc: BaseException) -> logging.LogRecord:
    return logging.LogRecord("asyncio", logging.ERROR, "base_events.py", 1, message, (), (type(exc), exc, None))


def test_only_unretrieved_errors_raised_in_orbax_are_dropped_from_asyncios_log():
    drop = late_errors.UnretrievedOrbaxError()
    in_orbax = _raised_in(os.path.join("site-packages", "orbax", "checkpoint", "_src", "serialization.py"))
    assert not drop.filter(_record("_GatheringFuture exception was never retrieved", in_orbax))
    assert drop.filter(_record("Future exception was never retrieved", _raised_in("mine.py")))
    from_c = ValueError('RESOURCE_EXHAUSTED: Error writing "a12/0.0" in OCDBT database')  # set by tensorstore
    assert not drop.filter(_record("Future exception was never retrieved", from_c))
    assert drop.filter(_record("Task was destroyed but it is pending!", in_orbax))
    assert drop.filter(logging.LogRecord("asyncio", logging.ERROR, "x.py", 1, "exception was never retrieved", (),
                                         None))


def test_a_restore_that_orbax_fails_on_a_missing_file_leaves_no_late_errors(tmp_path, monkeypatch, caplog):
    rng = np.random.default_rng(0)
    manager = ckpt.CheckpointManager(tmp_path, keep=3)
    for step in (1, 2):
        manager.save(step, {f"k{i}": jax.numpy.asarray(rng.normal(size=(64, 256)), "float32") for i in range(60)})
    manager.close()
    for f in (tmp_path / "step_000000002" / "arrays").rglob("d/*"):
        f.unlink()
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: seen.append(unraisable.exc_value))
    monkeypatch.setattr(late_errors, "_installed", False)
    monkeypatch.setattr(logging.getLogger("asyncio"), "filters", [])
    monkeypatch.setattr(store, "_check_files", lambda path, meta: None)  # orbax itself meets the missing files
    with caplog.at_level(logging.ERROR, logger="asyncio"), warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        _, meta = ckpt.CheckpointManager(tmp_path).restore(lambda e: ckpt.target(jax.ShapeDtypeStruct(e["shape"],
                                                                                                     e["dtype"])))
        time.sleep(0.5)  # the operations still in flight end
        gc.collect()  # the unread gathers are collected
    assert meta["step"] == 1 and [str(w.message) for w in warned if "could not be read" in str(w.message)]
    assert seen == [] and caplog.records == []
