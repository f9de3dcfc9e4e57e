"""Split a JSON object's text into its members without decoding the ones whose text is already known.

An archive of ccxt tier tables is one JSON object, `{symbol: [tiers...]}`, and consecutive archives repeat
most members byte for byte. Decoding is nine tenths of reading such a file, so `split_object` walks the
object's members with the standard library's own scanner (`json.decoder.scanstring` for the keys, the C
`scan_once` for a value) and, where a member's value text starts exactly as the text given for that key in
`known`, takes that text as the value without decoding it.

That shortcut is exact: an array, an object or a string is self-delimiting, so the value that begins at
that offset is those characters and ends where they end, whatever follows; the known text decoded once
already (it came from an earlier split), so it is valid JSON. Numbers and literals are not self-delimiting
("1" begins "12") and are always scanned. Anything the walk does not accept (not an object, bad syntax,
nesting too deep) raises `NotSplit`: the caller then decodes the whole text with `json.loads`, which gives
the result or the standard error, so this module never changes what a file means.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from json.decoder import scanstring  # type: ignore[attr-defined]  # public in the module, not in typeshed
from typing import Any

_WS = re.compile(r"[ \t\n\r]*")  # JSON's whitespace, no other
_OPEN = re.compile(r"[ \t\n\r]*\{[ \t\n\r]*")
_COLON = re.compile(r"[ \t\n\r]*:[ \t\n\r]*")
_NEXT = re.compile(r"[ \t\n\r]*([,}])[ \t\n\r]*")  # after a value: the next member, or the end
_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner json.loads uses


class NotSplit(Exception):
    """The text is not a JSON object this walk accepts; decode it with `json.loads` instead."""


@dataclass(frozen=True, slots=True)
class Member:
    """One member's value: its exact text and, unless that text was known (`value is SAME`), its decoding."""

    text: str
    value: Any


SAME: Any = object()  # the value of a member whose text was the known one: decode `text` if you need it


def decode_text(data: bytes) -> str:
    """`data` as text, in the encoding `json.loads` would detect for it (UTF-8, -16 or -32; BOM or not)."""
    return data.decode(json.detect_encoding(data), "surrogatepass")


def split_object(text: str, known: Mapping[str, str]) -> dict[str, Member]:
    """The members of the JSON object `text`, in the order and with the duplicates rule of `json.loads`
    (a repeated key keeps its first position and its last value). Raises `NotSplit`."""
    try:
        return _split(text, known)
    except (ValueError, IndexError, RecursionError, StopIteration) as exc:
        raise NotSplit(str(exc)) from None


def _split(text: str, known: Mapping[str, str]) -> dict[str, Member]:
    out: dict[str, Member] = {}
    opening = _OPEN.match(text)
    if opening is None:
        raise NotSplit("not an object")
    i = opening.end()
    if text[i : i + 1] == "}":
        return _end(text, i + 1, out)
    while True:
        if text[i : i + 1] != '"':
            raise NotSplit(f"expected a key at char {i}")
        key, i = scanstring(text, i + 1)
        colon = _COLON.match(text, i)
        if colon is None:
            raise NotSplit(f"expected ':' at char {i}")
        i = colon.end()
        before = known.get(key)
        if before and before[0] in '[{"' and text.startswith(before, i):
            out[key] = Member(before, SAME)
            i += len(before)
        else:
            value, end = _SCAN(text, i)
            out[key] = Member(text[i:end], value)
            i = end
        after = _NEXT.match(text, i)
        if after is None:
            raise NotSplit(f"expected ',' or '}}' at char {i}")
        if after.group(1) == "}":
            return _end(text, after.end(), out)
        i = after.end()


def _end(text: str, i: int, out: dict[str, Member]) -> dict[str, Member]:
    if _WS.match(text, i).end() != len(text):  # type: ignore[union-attr]
        raise NotSplit(f"extra data at char {i}")
    return out
