"""Keep the late errors of a failed orbax save or restore off stderr; the error that failed it is reported once.

When one write (or read) fails, for example on a full disk, orbax's `asyncio.gather` raises at once while the
other operations are still in flight, and its event loop is closed. Two kinds of noise follow, a traceback
per operation still in flight, about a failure already on its way to our caller:

- tensorstore, as each ends, calls `loop.call_soon_threadsafe` from its own thread; asyncio refuses ("Event
  loop is closed") and, with no Python caller, the refusal goes to `sys.unraisablehook`;
- the per-array gathers that failed too are collected unread, and asyncio logs "exception was never
  retrieved" with their tracebacks through orbax.

`install()` chains a hook and adds a log filter that drop exactly these and pass everything else on.
"""
from __future__ import annotations

import logging
import os
import sys
import traceback

_ASYNCIO_LOOP = os.path.join("asyncio", "base_events.py")
_ORBAX = os.path.join("orbax", "checkpoint")
_installed = False


def is_late_callback(unraisable) -> bool:
    """An "Event loop is closed" refusal of a `call_soon_threadsafe` that no Python code called (the outermost
    Python frame is that method: the call came from tensorstore's thread)."""
    frames = traceback.extract_tb(unraisable.exc_traceback)
    return (isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed"
            and bool(frames) and frames[0].name == "call_soon_threadsafe"
            and frames[0].filename.endswith(_ASYNCIO_LOOP))


class UnretrievedOrbaxError(logging.Filter):
    """Drops asyncio's "exception was never retrieved" for an exception raised inside orbax, or set by the
    tensorstore read or write under it (a C future: no Python frame at all, whatever its message)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or "exception was never retrieved" not in record.getMessage():
            return True
        frames = traceback.extract_tb(exc.__traceback__)
        return bool(frames) and not any(_ORBAX in frame.filename for frame in frames)


def install() -> None:
    """Chain the hook in front of the current `sys.unraisablehook` and filter asyncio's log (once)."""
    global _installed
    if _installed:
        return
    previous = sys.unraisablehook

    def hook(unraisable):
        if not is_late_callback(unraisable):
            previous(unraisable)

    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(UnretrievedOrbaxError())
    _installed = True
