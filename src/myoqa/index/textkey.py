"""The content key of a unit's text: a unit whose text a previous build already encoded keeps
its vectors."""

from __future__ import annotations

import hashlib


def text_key(text: str) -> bytes:
    """The content key of a unit's text, for reusing its vectors."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
