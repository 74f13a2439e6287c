"""A guard against a PySide6 reference-count bug that aborts long-running Qt processes.

PySide6 6.12.0 on Python 3.11 (this project's venv): `SignalInstance.emit()` called from
Python returns True without taking a reference to it, so every emit drops one reference to
the `True` object. pyqtgraph emits several signals per frame; after a few thousand the count
reaches zero and the interpreter aborts with "Fatal Python error: bool_dealloc: deallocating
True or False" (within minutes of live video, or at exit). Python 3.12 and later make the
bools immortal, so the bug is harmless there.

`guard_bool_refcounts()` measures the leak with a throwaway signal and, only if emits leak,
lifts the reference counts of True and False out of reach, which is what Python 3.12 does
for them anyway. Call it once per process before the GUI runs (`build_viewer` does).
"""
from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)

_LIFT = 1 << 40  # a million emits a second would need 12 days to use this up
_guarded = False


def emit_leak(trials: int = 16) -> int:
    """References to True that `trials` emits of a Python-side signal lose (0 when sound)."""
    from pyqtgraph.Qt import QtCore

    class _Probe(QtCore.QObject):
        fired = QtCore.Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(trials):
        probe.fired.emit()
    return before - sys.getrefcount(True)


def guard_bool_refcounts() -> bool:
    """Make True/False unkillable if this PySide6 leaks references to them. True if it did."""
    global _guarded
    if _guarded or sys.version_info >= (3, 12):
        return False
    leak = emit_leak()
    if leak <= 0:
        return False
    if hasattr(sys, "getobjects"):  # a Py_TRACE_REFS build: another object layout, leave it alone
        log.warning("PySide6 drops a reference to True on every Signal.emit(); this Python build cannot be "
                    "guarded: long Qt sessions may abort. Use PySide6 other than 6.12.0, or Python 3.12+")
        return False
    import ctypes

    from pyqtgraph.Qt import QtCore

    for obj in (True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += _LIFT  # ob_refcnt is a PyObject's first field
    _guarded = True
    log.info("PySide6 %s drops a reference to True on every Signal.emit() (%d in %d emits) under Python %d.%d; "
             "the bools' reference counts are lifted so that the viewer cannot abort (fixed by Python 3.12+)",
             getattr(QtCore, "__version__", "?"), leak, 16, *sys.version_info[:2])
    return True
