"""Text from a checkpoint made safe for a terminal.

Tensor names, file names, ``model_type``, metadata and paths come from the input, and a name
holding ``ESC ] 0 ; ... BEL`` retitles the window, ``ESC [ 2 J`` clears the screen, and a
right-to-left override (U+202E) makes a name read as another ("Trojan source"). Every text
renderer (table, GitHub annotations, Markdown, the fix plan, messages on stderr) passes input
text through ``printable`` so such characters are shown as escapes instead of acted on. JSON,
SARIF and JUnit keep the exact text (JSON escapes control characters itself; XML replaces what
it cannot hold).
"""

from __future__ import annotations

import os
import re
import shutil
from typing import TextIO

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, newlines: bool = False) -> str:
    """``text`` with control, bidirectional-override and lone-surrogate characters written as
    ``\\xNN``/``\\uNNNN`` escapes; ``newlines=True`` keeps line breaks (for text the renderer
    laid out in lines itself)."""
    if newlines:
        return "\n".join(_UNSAFE.sub(_escape, line) for line in text.split("\n"))
    return _UNSAFE.sub(_escape, text)


PIPE_WIDTH = 100
"""Width of piped output without ``COLUMNS`` (CI logs are wider than rich's 80)."""
MIN_WIDTH = 40


def report_width(out: TextIO) -> int:
    """``COLUMNS`` when it holds a usable number, else the terminal's width, else 100."""
    columns = os.environ.get("COLUMNS", "").strip()
    if columns.isdigit() and int(columns) >= MIN_WIDTH:
        return int(columns)
    if out.isatty():
        return max(shutil.get_terminal_size((PIPE_WIDTH, 24)).columns, MIN_WIDTH)
    return PIPE_WIDTH
