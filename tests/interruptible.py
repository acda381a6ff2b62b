"""Children that a test interrupts with SIGINT (Ctrl-C) must see SIGINT as an interactive shell would give it.

A test run started as a background job of a non-interactive shell (``cmd &`` in a script, ``nohup``) inherits
SIGINT *ignored*, and Python then installs no KeyboardInterrupt handler in its children: a ``send_signal(SIGINT)``
does nothing and the test times out (seen on a fresh-clone CI run started that way). ``preexec_fn=sigint_default``
restores the default disposition in the child before it execs.
"""

from __future__ import annotations

import signal

__all__ = ["sigint_default"]


def sigint_default() -> None:
    """``subprocess.Popen(preexec_fn=...)``: SIGINT back to its default, whatever the test run inherited."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
