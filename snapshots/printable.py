"""Outside text made printable: the one rule every human output (terminal, e-mail, chat) applies.

Symbols, exchange error messages, channel errors and notes come from outside. Shown raw, an ESC sequence
could recolour or rewrite the terminal, a `\\r` overwrite the start of a line, a newline forge a record
and a bidi override (U+202E) reverse what a reader sees. `printable` shows each such character as its
escape (`\\x1b`, `\\r`, `\\u202e`), so the reader sees exactly what was sent, on one line.
"""

from __future__ import annotations

import unicodedata

#: Unicode categories that are not text to look at: controls (C0, DEL, C1), format characters (bidi
#: overrides and isolates, zero-width spaces and joiners, BOM), lone surrogates, line/paragraph separators.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str, *, keep_newlines: bool = False, limit: int | None = None) -> str:
    """`text` with every control, format and separator character replaced by its visible escape.

    `keep_newlines` keeps `\\n` as a line break (for text we laid out in lines ourselves). A `limit`
    clips the result to that many characters, the last being `…`. Plain text comes back unchanged.
    """
    if not text.isprintable():
        text = "".join(
            _escape(ch) if unicodedata.category(ch) in _HIDDEN and not (keep_newlines and ch == "\n") else ch
            for ch in text
        )
    if limit is not None and len(text) > limit:
        return text[: max(limit - 1, 0)] + "…"
    return text
