"""What a failed sweep says: one line for its owner, the detail for admins.

Ray's job message and the driver's log hold tracebacks (source paths of the server's installation) and
terminal colour codes. ``failure_text`` keeps the exception's own line as the reason everyone sees, with
the sweep's directory named ``<sweep dir>``, and the last log lines as the detail only admins see; no
ANSI escape or other control character survives in either.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from search_spaces.run.sweep_dir import HIDDEN_DIR

#: CSI / OSC escape sequences and the remaining C0/C1 control characters (tab and newline are kept).
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: The last line of a Python traceback, ``module.SomeError: what happened``, after the ``(pid=...)`` prefix
#: Ray puts on the lines of its workers.
_EXCEPTION_LINE = re.compile(
    r"^(?:\([^)]*\)\s*)?((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Failure)\b(?::.*)?)$")
_TRACEBACK_MARKS = ("Traceback (most recent call last)", 'File "')
MAX_REASON = 500
MAX_DETAIL = 4000


def strip_control(text: str) -> str:
    """``text`` without terminal escape sequences or control characters (newlines and tabs stay)."""
    return _ANSI.sub("", text)


def failure_text(job_message: str, log_lines: Sequence[str], sweep_dir: str) -> tuple[str, str]:
    """``(reason, detail)``: the one-line reason shown to everyone and the detail shown to admins."""
    message = strip_control(job_message).strip()
    lines = [strip_control(line).rstrip() for line in log_lines]
    lines = [line for line in lines if line.strip()]
    candidates = [*lines, *message.splitlines()]
    matches = (_EXCEPTION_LINE.match(line.strip()) for line in reversed(candidates))
    reason = next((m.group(1) for m in matches if m), "")
    if not reason:
        first = message.splitlines()[0].strip() if message else ""
        if first and not any(mark in message for mark in _TRACEBACK_MARKS):
            reason = first
    if sweep_dir:
        reason = reason.replace(sweep_dir.rstrip("/"), HIDDEN_DIR)
    reason = f"failed: {reason[:MAX_REASON]}" if reason else "failed (an administrator can see the detail)"
    detail = message
    if lines:
        detail += ("\n" if detail else "") + "last log lines:\n" + "\n".join(lines[-20:])
    return reason, detail[-MAX_DETAIL:]
