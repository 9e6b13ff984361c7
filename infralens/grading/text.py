"""Learner-controlled text made safe for every output: bounded, printable, valid Unicode.

Failure messages, exception text and printed output come from learner code. Before the grader
stores them, :func:`safe_text` caps their length and removes what would break a consumer: NUL and
other control characters (invalid in XML 1.0), terminal escape sequences, and lone surrogates
(which no UTF-8 writer accepts). :func:`csv_cell` also keeps a spreadsheet from reading a cell as
a formula.
"""

from __future__ import annotations

import re

MESSAGE_CHARS = 2000
_ESCAPE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-_])")  # CSI, OSC and two-byte escapes
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_text(text: str, limit: int = MESSAGE_CHARS) -> str:
    """``text`` without escape sequences or control characters (tabs and newlines stay), lone
    surrogates as U+FFFD, and at most ``limit`` characters (the cut is marked)."""
    text = _ESCAPE.sub("", str(text))
    text = _UNSAFE.sub(lambda match: "\ufffd" if "\ud800" <= match.group() <= "\udfff" else "", text)
    if len(text) > limit:
        text = text[: limit - 40] + f" … [{len(text) - limit + 40:,} more characters cut]"
    return text


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: strings starting like a formula get a leading ``'``."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value
