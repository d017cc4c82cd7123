"""Reading a value out of a nested JSON document by a dotted path such as ``a.b[0].c``."""

from __future__ import annotations

import re

_PART = re.compile(r"[^.\[\]]+|\[\d+\]")


def dotted_get(doc, path: str):
    """``doc["a"]["b"][0]["c"]`` for ``path`` ``a.b[0].c``; LookupError when a part is missing."""
    value = doc
    for part in _PART.findall(path):
        try:
            value = value[int(part[1:-1])] if part.startswith("[") else value[part]
        except (KeyError, IndexError, TypeError):
            raise LookupError(path) from None
    return value
