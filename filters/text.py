"""Text helpers shared by the filters: normalisation, word tokens, word n-grams, row keys."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

Row = dict[str, Any]
RowKey = str | Sequence[str] | Callable[[Row], str]

_WORD = re.compile(r"\w+", re.UNICODE)
_ASCII_NON_WORD = str.maketrans({chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "_")})
ROW_ID_FIELDS = ("row_id", "docid", "qid", "_id")


def normalize_text(text: str) -> str:
    """NFKC, lower case, punctuation dropped, whitespace collapsed: the text that hashes compare."""
    return " ".join(word_tokens(text))


def word_tokens(text: str) -> list[str]:
    """Lower-cased word tokens (Unicode letters, digits and underscore) of NFKC-normalised text.

    ASCII text takes a fast path (translate + split, ~4x faster) with the same result.
    """
    if text.isascii():
        return text.lower().translate(_ASCII_NON_WORD).split()
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


def ascii_word_bytes(text: str) -> list[bytes]:
    """`word_tokens` of an ASCII text as bytes, without building the str tokens first."""
    return text.lower().translate(_ASCII_NON_WORD).encode().split()


def word_ngrams(tokens: Sequence[str], n: int) -> list[str]:
    """Space-joined word n-grams; a non-empty text shorter than n yields itself as one gram."""
    if len(tokens) < n:
        return [" ".join(tokens)] if tokens else []
    return [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def key_text(row: Row, key: RowKey) -> str:
    """The text of `row` that a filter compares, as chosen by `key`.

    `key` is a field name, a sequence of field names (values joined by a newline), or a
    callable `row -> str`. A list value (e.g. `relevant_docids`) is joined with spaces, so
    `key=("query", "relevant_docids")` compares (query, positives) pairs. A missing field is
    a `KeyError` naming it.
    """
    if callable(key):
        return key(row)
    fields = (key,) if isinstance(key, str) else tuple(key)
    return "\n".join(_field_text(row, field) for field in fields)


def _field_text(row: Row, field: str) -> str:
    if field not in row:
        raise KeyError(f"row {row_label(row)} has no field {field!r}")
    value = row[field]
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " ".join(str(item) for item in value)
    return str(value)


def row_label(row: Row, position: int | None = None) -> str:
    """A row's id for messages: the first of row_id/docid/qid/_id it has, else `#position`."""
    for field in ROW_ID_FIELDS:
        if row.get(field) is not None:
            return str(row[field])
    return f"#{position}" if position is not None else "#?"


def describe_key(key: RowKey) -> str | list[str]:
    """A manifest-friendly form of a key (callables by their qualified name)."""
    if callable(key):
        return getattr(key, "__qualname__", repr(key))
    return key if isinstance(key, str) else list(key)


__all__ = [
    "ROW_ID_FIELDS",
    "Row",
    "RowKey",
    "ascii_word_bytes",
    "describe_key",
    "key_text",
    "normalize_text",
    "row_label",
    "word_ngrams",
    "word_tokens",
]
