"""The CLI boundary: errors become one ``evt: …`` line on stderr and an exit code."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Callable

from ..errors import join_lines

INTERRUPTED = 130
PIPE_CLOSED = 141  # what a shell reports for a process ended by SIGPIPE


def fail(message: str, code: int) -> int:
    "One line on stderr, whatever the message holds (a validator's text may have line breaks)."
    sys.stderr.write(f"evt: {join_lines(message)}\n")
    sys.stderr.flush()
    return code


def debugging() -> bool:
    "``EVT_DEBUG`` set to anything but empty, 0, false, no or off."
    return os.environ.get("EVT_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def guarded(fn: Callable[..., Any], *args: Any) -> int:
    """Run a command; map evt's errors, Ctrl-C and a closed pipe to exit codes.

    ``EVT_DEBUG=1`` prints the traceback too; the message and exit code stay the same,
    so a script behaves alike with and without it.
    """
    from ..errors import EvtError, OutputClosed

    # A closed pipe (evt read | head -1) ends evt quietly, as it does cat or grep.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        result = fn(*args)
        return result if isinstance(result, int) else 0
    except OutputClosed:  # evt consume … | head -1: ends like evt read | head -1
        if os.environ.get("EVT_DEBUG"):
            raise
        return PIPE_CLOSED
    except EvtError as e:
        show_traceback()
        return fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        show_traceback()
        return INTERRUPTED
    except Exception as e:  # a bug: say so in one line, unless debugging
        hint = "" if show_traceback() else " (EVT_DEBUG=1 shows the traceback)"
        return fail(f"internal error: {type(e).__name__}: {e}{hint}", 1)


def show_traceback() -> bool:
    "Print the traceback of the error being handled when debugging; whether it did."
    if not debugging():
        return False
    import traceback

    traceback.print_exc()
    sys.stderr.flush()
    return True
