"""Trace-time switches: thread-local flags that change how MAXIM traces its graph.

A switch is set for the duration of a ``with`` block on the current thread only
(tracing in another thread is unaffected) and restores its previous value on
exit, so switches nest.

Example:
    >>> PORTABLE = TraceSwitch("portable")
    >>> with PORTABLE.on():
    ...     assert PORTABLE.is_on()
"""

import contextlib
import threading


class TraceSwitch:
    """A named thread-local boolean, False unless inside :meth:`on`."""

    def __init__(self, name):
        self.name = name
        self._state = threading.local()

    def is_on(self):
        """True inside :meth:`on` on this thread."""
        return getattr(self._state, "value", False)

    @contextlib.contextmanager
    def on(self):
        """Set the switch for the ``with`` block (on this thread)."""
        previous = self.is_on()
        self._state.value = True
        try:
            yield
        finally:
            self._state.value = previous
