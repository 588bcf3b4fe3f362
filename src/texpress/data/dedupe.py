"""Exact-duplicate detection: the first image with a given pixel hash is kept, later ones listed."""

from __future__ import annotations


class Deduper:
    """Remembers the source of the first image seen for each content hash."""

    def __init__(self) -> None:
        self._first: dict[str, str] = {}

    def check(self, sha256_hex: str, source: str) -> str | None:
        """None when this content is new (and now remembered); else the source kept for it."""
        kept = self._first.get(sha256_hex)
        if kept is None:
            self._first[sha256_hex] = source
        return kept

    def __len__(self) -> int:
        return len(self._first)
